"""The worker's lifecycle flags, shared by its services: stopping, and stopping on its own (fatal).

A service that finds the worker cannot go on (jobkit's tables are gone, too many executor
threads are stuck) calls :meth:`Lifecycle.go_fatal`; the producer stops claiming and the
supervisor (``JobQueue.run`` or the CLI) drains the worker and exits with ``exit_code``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("jobkit.worker")

#: Exit codes a worker that stops on its own asks its process to exit with.
EXIT_NO_SCHEMA = 2
EXIT_STUCK = 4


def no_schema(url: str) -> str:
    """The reason a worker gives when jobkit's tables are missing from the database at ``url``."""
    return f"the database at {url} has no jobkit tables: run `jobkit db upgrade`"


class Lifecycle:
    """``stopping`` (asked to stop) and ``fatal`` (decided to stop on its own, with a code and a reason)."""

    def __init__(self) -> None:
        #: Set when the worker was asked to stop (or to give up starting); the services wind down.
        self.stopping = threading.Event()
        #: Set when the worker decided on its own to stop; ``exit_code`` and ``fatal_reason`` say why.
        self.fatal = threading.Event()
        self.exit_code = 0
        self.fatal_reason = ""
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (quick, never raising) when the worker starts stopping or goes fatal."""
        self._listeners.append(listener)

    def request_stop(self) -> None:
        """Ask the worker to stop; safe from a signal handler."""
        self.stopping.set()
        self._changed()

    def go_fatal(self, code: int, reason: str) -> None:
        """Stop claiming for good and tell the supervisor to stop the worker with ``code`` (first reason wins)."""
        with self._lock:
            if self.fatal.is_set():
                return
            self.exit_code = code
            self.fatal_reason = reason
            self.fatal.set()
        log.error("%s; the worker stops (exit code %d)", reason, code)
        self._changed()

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

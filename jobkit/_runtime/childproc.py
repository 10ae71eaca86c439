"""One child process of the process pool, seen from the worker: its pipe, its signals, its death.

:func:`start_child` starts a fresh interpreter running :func:`jobkit._runtime.child.main` (as
multiprocessing's ``spawn`` would, but without re-running the worker's ``__main__``; never a
fork of the threaded worker) and hands it its :class:`~jobkit._runtime.child.ChildConfig`;
:func:`ready` waits until it has imported the app.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from jobkit._runtime import wire
from jobkit._runtime.child import ChildConfig
from jobkit.errors import WorkerLost

#: Seconds between a child's SIGTERM and its SIGKILL.
TERM_TO_KILL = 0.5
#: Seconds a child is given to start and import the app before it counts as failed.
START_TIMEOUT = 60.0


class Child:
    """One child process and the parent's end of its pipe."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pid: int = process.pid
        self.tasks = 0
        self.rss = 0
        #: The job it runs now (None while idle).
        self.job_id: int | None = None
        #: Why it is being ended by the parent (None: it was not), so its death is not a crash.
        self.killing: str | None = None
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> bool:
        """Send a message; False when the child is gone."""
        data = wire.encode(message)
        try:
            with self._send_lock:
                self.conn.send_bytes(data)
        except (OSError, ValueError):
            return False
        return True

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end of file (the child died or closed its end)."""
        try:
            return wire.decode(self.conn.recv_bytes())
        except (EOFError, OSError):
            return None

    def signal(self, signum: int) -> None:
        """Send a signal unless the child is already reaped."""
        # poll() reaps a dead child first, so a recycled pid is never signalled.
        if self.process.poll() is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def death(self) -> str:
        """How the child ended: "exit code N" or "signal SIGSEGV" (waiting a moment for it to be reaped)."""
        code = self.wait(TERM_TO_KILL * 4)
        if code is None:
            self.signal(signal.SIGKILL)
            code = self.wait(5)
        if code is None:
            return "an unknown cause"
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit code {code}"

    def wait(self, timeout: float) -> int | None:
        """The exit status once the child has ended within ``timeout`` seconds, else None."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Ask an idle child to exit and forget it; it exits on its own when it reads the request."""
        self.send({"op": "stop"})
        self.conn.close()


def start_child(modules: tuple[str, ...], max_payload_depth: int, max_payload_bytes: int) -> Child:
    """Start a child that will import ``modules``; it is not ready until :func:`ready` says so."""
    parent_end, child_end = multiprocessing.Pipe(duplex=True)
    levels = tuple((name, logging.getLogger(name or None).getEffectiveLevel()) for name in ("", "jobkit", "jobkit.job"))
    config = ChildConfig(
        modules,
        max_payload_depth,
        max_payload_bytes,
        log_levels=levels,
        sys_path=tuple(sys.path),
        parent_pid=os.getpid(),
    )
    fd = child_end.fileno()
    command = [sys.executable, "-c", f"from jobkit._runtime.child import main, Connection; main(Connection({fd}))"]
    try:
        process = subprocess.Popen(command, pass_fds=(fd,), stdin=subprocess.DEVNULL)
    finally:
        child_end.close()  # only the child holds its end now: its death is end of file here
    child = Child(process, parent_end)
    child.send(config.to_json())
    return child


def ready(child: Child) -> Child:
    """The child once it said it is ready (it imported the app); a child that did not is ended."""
    hello = child.conn.poll(START_TIMEOUT) and child.recv()
    if not hello or hello.get("op") != "ready":
        cause = child.death()
        raise WorkerLost(f"a child process did not start ({cause})")
    return child

"""The deadline watchdog: one thread that acts on held jobs when their time is up.

Two kinds of deadline: ``timeout`` (a job ran past its ``timeout``: its token is fired) and
``abandon`` (a job ignored its token past ``kill_grace``: it is ended without it). What an
action does is the pool's; this service only keeps the heap and the thread, and survives
whatever one action throws.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from jobkit._runtime.ledger import HeldJob

log = logging.getLogger("jobkit.worker")


class Action(StrEnum):
    """What to do with a held job when its deadline passes."""

    TIMEOUT = "timeout"
    ABANDON = "abandon"


OnDeadline = Callable[[HeldJob, Action], None]


class Deadlines:
    """Timeouts and kill_grace deadlines of held jobs, fired in time order on one thread.

    Example::

        deadlines = Deadlines(on_due)
        deadlines.start()
        deadlines.at(30.0, held, Action.TIMEOUT)   # on_due(held, Action.TIMEOUT) in 30 s
        deadlines.run_once()                       # or fire what is due now, in this thread
        deadlines.stop()
    """

    def __init__(self, on_due: OnDeadline, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._on_due = on_due
        self._monotonic = monotonic
        self._heap: list[tuple[float, int, HeldJob, Action]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, after: float, held: HeldJob, action: Action) -> None:
        """Do ``action`` to ``held`` ``after`` seconds from now (unless it ended meanwhile: the pool checks)."""
        with self._cv:
            heapq.heappush(self._heap, (self._monotonic() + after, next(self._seq), held, action))
            self._cv.notify()

    def start(self) -> None:
        """Start the watchdog thread (again after a stop); a no-op while it runs."""
        with self._cv:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="jobkit-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread; deadlines not yet due are dropped with it."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
            thread = self._thread
            self._thread = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def run_once(self) -> int:
        """Act on every deadline that is due now, in the calling thread; returns how many."""
        due = self._take_due()
        self._act(due)
        return len(due)

    def _take_due(self) -> list[tuple[HeldJob, Action]]:
        with self._cv:
            now = self._monotonic()
            due: list[tuple[HeldJob, Action]] = []
            while self._heap and self._heap[0][0] <= now:
                _, _, held, action = heapq.heappop(self._heap)
                due.append((held, action))
            return due

    def _act(self, due: list[tuple[HeldJob, Action]]) -> None:
        for held, action in due:
            try:
                self._on_due(held, action)
            except Exception:
                log.exception("watchdog: job %s: %s failed; continuing", held.job.id, action)

    def _loop(self) -> None:
        while True:
            with self._cv:
                if self._stopping:
                    return
                if not self._heap or self._heap[0][0] > self._monotonic():
                    self._cv.wait(self._heap[0][0] - self._monotonic() if self._heap else None)
                    continue
            self._act(self._take_due())

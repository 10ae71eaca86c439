"""Progress and checkpoints from a running job: lease-checked, progress coalesced.

A job may call ``progress`` in a tight loop; the database sees at most a few writes per
second per job. A write goes through at once on a stage change and at 100%; otherwise the
newest report waits and the worker's flusher thread writes it when the interval has passed,
so what other processes read is never more than ``PROGRESS_MIN_INTERVAL`` behind. What is
still unwritten when the job ends is written by the completer together with the outcome.

The stored progress carries ``seq`` (per attempt), ``lease`` (which attempt) and the log of
stages this attempt went through, so a stream that polls can replay stages it missed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from jobkit._cancel import CancelToken
from jobkit._clock import Clock
from jobkit._payload import dumps
from jobkit._store import ClaimedJob, Store, Transition
from jobkit._vocabulary import CancelReason, Event, EventType, TransitionKind

log = logging.getLogger("jobkit.progress")

#: At most this many progress writes per second per job (stage changes and 100% always go through).
PROGRESS_MIN_INTERVAL = 0.25
MAX_STAGE_LOG = 100

Emit = Callable[[Event], None]


class ReportWrites(Protocol):
    """Where a running job's reports are written; False: the job's lease no longer holds."""

    def progress(self, job: ClaimedJob, payload: str, now: float) -> bool:
        """Write the job's progress, fenced by its lease."""
        ...

    def checkpoint(self, job: ClaimedJob, payload: str, now: float) -> bool:
        """Write the job's checkpoint, fenced by its lease."""
        ...


class StoreReports:
    """The store writes of running jobs' reports: the only place the reporter touches the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def progress(self, job: ClaimedJob, payload: str, now: float) -> bool:
        """Write progress (and notify its waiters)."""
        return self.store.write_progress(job.id, worker=job.worker_id, lease=job.lease, progress=payload, now=now)

    def checkpoint(self, job: ClaimedJob, payload: str, now: float) -> bool:
        """Write a checkpoint."""
        transition = Transition(TransitionKind.CHECKPOINT, job.id, job.worker_id, job.lease, {"checkpoint": payload})
        return self.store.transition(transition, now=now)


class FlushScheduler(Protocol):
    """Calls ``reporter.flush()`` at monotonic time ``due``."""

    def schedule(self, due: float, reporter: JobReporter) -> None:
        """Flush ``reporter`` at ``due``."""
        ...


class Flusher:
    """The worker's progress flusher: one thread, started on first use, that writes coalesced progress."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, JobReporter]] = []
        self._cv = threading.Condition()
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def schedule(self, due: float, reporter: JobReporter) -> None:
        """Flush ``reporter`` at ``due``; after :meth:`stop` the report waits for the completer instead."""
        with self._cv:
            if self._stopped:
                return
            heapq.heappush(self._heap, (due, next(self._counter), reporter))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jobkit-progress", daemon=True)
                self._thread.start()
            self._cv.notify()

    def stop(self) -> None:
        """Stop the thread; a report still waiting is written by the completer with its job's outcome."""
        with self._cv:
            self._stopped = True
            self._heap.clear()
            self._cv.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cv.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stopped:
                    return
                _, _, reporter = heapq.heappop(self._heap)
            try:
                reporter.flush()
            except Exception:
                log.exception("job %s: could not flush progress", reporter.job.id)


class JobReporter:
    """The Reporter a running job writes through; a refused write means the lease is lost.

    ``writes`` is where reports land (:class:`StoreReports`), ``flusher`` writes a coalesced
    report later, ``monotonic`` paces the writes (a test passes its own).
    """

    def __init__(
        self,
        job: ClaimedJob,
        token: CancelToken,
        clock: Clock,
        emit: Emit,
        writes: ReportWrites,
        flusher: FlushScheduler,
        dump: Callable[[Any], str] = dumps,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writes_to = writes
        self.flusher = flusher
        self._monotonic = monotonic
        self.job = job
        #: Strict JSON with the queue's payload limits; raises PayloadError in the job's own thread.
        self.dump = dump
        self.token = token
        self.clock = clock
        self.emit = emit
        self._lock = threading.Lock()
        # Held for the whole of a progress write, so writes land in seq order and none is in flight at the end.
        self._write_lock = threading.Lock()
        self._seq = 0
        self._written_seq = 0
        self._stages: list[str] = []
        self._stage_count = 0
        self._last_write = float("-inf")
        self._pending: tuple[int, str, dict[str, Any]] | None = None
        self._flush_scheduled = False
        self._closed = False
        self.writes = 0

    def progress(self, percent: float, stage: str | None, message: str | None, data: dict[str, Any]) -> None:
        """Record progress; written now if due (or on a stage change or 100%), else by the flusher shortly."""
        with self._lock:
            if self._closed:
                return
            self._seq += 1
            if stage is None and self._stages:
                stage = self._stages[-1]  # a report without a stage belongs to the current one
            stage_changed = stage is not None and (not self._stages or self._stages[-1] != stage)
            if stage_changed and stage is not None:
                self._stages.append(stage)
                self._stage_count += 1
                del self._stages[:-MAX_STAGE_LOG]
            event = {"percent": percent, "stage": stage, "message": message, "data": data}
            # Serialised now, in the job's own thread, so data that is not JSON fails the call that passed it.
            payload = self.dump(
                {
                    **event,
                    "seq": self._seq,
                    "lease": self.job.lease,
                    "attempt": self.job.attempt,
                    "stages": self._stages,
                    "stage_count": self._stage_count,
                    "at": self.clock.now(),
                }
            )
            report = (self._seq, payload, event)
            now = self._monotonic()
            due = stage_changed or percent >= 100 or now - self._last_write >= PROGRESS_MIN_INTERVAL
            if not due:
                self._pending = report
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self.flusher.schedule(self._last_write + PROGRESS_MIN_INTERVAL, self)
                return
            self._pending = None
            self._last_write = now
        self._write_progress(report)

    def flush(self) -> None:
        """Write the coalesced report if one is waiting (called by the flusher thread)."""
        with self._lock:
            self._flush_scheduled = False
            report = self._pending
            if report is None or self._closed:
                return
            now = self._monotonic()
            if now - self._last_write < PROGRESS_MIN_INTERVAL:
                self._flush_scheduled = True
                self.flusher.schedule(self._last_write + PROGRESS_MIN_INTERVAL, self)
                return
            self._pending = None
            self._last_write = now
        self._write_progress(report)

    def take_pending(self) -> str | None:
        """Close the reporter and return the progress not yet written (the completer writes it with the outcome)."""
        with self._write_lock, self._lock:
            self._closed = True
            pending, self._pending = self._pending, None
            if pending is None or pending[0] <= self._written_seq:
                return None
            return pending[1]

    def checkpoint(self, stage: str, data: Any) -> None:
        """Persist a checkpoint now; raises if the data is not JSON."""
        payload = self.dump({"stage": stage, "data": data, "at": self.clock.now()})
        try:
            took = self.writes_to.checkpoint(self.job, payload, self.clock.now())
        except Exception as exc:
            # A lost checkpoint costs re-running a stage on a later attempt, never correctness.
            log.warning("job %s: could not write checkpoint %r: %s", self.job.id, stage, exc)
            return
        if not took:
            self._lease_lost("checkpoint")

    def _write_progress(self, report: tuple[int, str, dict[str, Any]]) -> None:
        seq, payload, event = report
        with self._write_lock:
            if self._closed or seq <= self._written_seq:
                return
            try:
                took = self.writes_to.progress(self.job, payload, self.clock.now())
            except Exception as exc:
                log.warning("job %s: could not write progress: %s", self.job.id, exc)
                with self._lock:
                    # Keep it for the flusher or the completer, unless something newer is already waiting.
                    if self._pending is None:
                        self._pending = report
                        if not self._flush_scheduled:
                            self._flush_scheduled = True
                            self.flusher.schedule(self._monotonic() + PROGRESS_MIN_INTERVAL, self)
                return
            if not took:
                self._lease_lost("progress")
                return
            self._written_seq = seq
            self.writes += 1
        self.emit(Event.of(EventType.PROGRESS, self.job.id, name=self.job.name, **event))

    def _lease_lost(self, what: str) -> None:
        log.warning("job %s: lease lost; %s refused, cancelling the job", self.job.id, what)
        self.token.cancel(CancelReason.LEASE_LOST)

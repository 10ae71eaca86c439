"""Progress and checkpoints from a running job: lease-checked, progress coalesced.

A job may call ``progress`` in a tight loop; the database sees at most a few writes per
second per job. A write goes through at once on a stage change and at 100%; otherwise the
newest report waits and a shared flusher thread writes it when the interval has passed,
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
from typing import Any

from jobkit._cancel import CancelToken
from jobkit._clock import Clock
from jobkit._payload import dumps
from jobkit._store import ClaimedJob, Store, Transition
from jobkit._store.events import write_progress

log = logging.getLogger("jobkit.progress")

#: At most this many progress writes per second per job (stage changes and 100% always go through).
PROGRESS_MIN_INTERVAL = 0.25
MAX_STAGE_LOG = 100


class _Flusher:
    """One daemon thread that writes coalesced progress when its interval has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, JobReporter]] = []
        self._cv = threading.Condition()
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, due: float, reporter: JobReporter) -> None:
        with self._cv:
            heapq.heappush(self._heap, (due, next(self._counter), reporter))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jobkit-progress", daemon=True)
                self._thread.start()
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cv.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, reporter = heapq.heappop(self._heap)
            try:
                reporter.flush()
            except Exception:
                log.exception("job %s: could not flush progress", reporter.job.id)


_flusher = _Flusher()


class JobReporter:
    """The Reporter a running job writes through; a refused write means the lease is lost."""

    def __init__(
        self,
        store: Store,
        job: ClaimedJob,
        token: CancelToken,
        clock: Clock,
        emit: Callable[[dict[str, Any]], None],
        dump: Callable[[Any], str] = dumps,
    ) -> None:
        self.store = store
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
            now = time.monotonic()
            due = stage_changed or percent >= 100 or now - self._last_write >= PROGRESS_MIN_INTERVAL
            if not due:
                self._pending = report
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    _flusher.schedule(self._last_write + PROGRESS_MIN_INTERVAL, self)
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
            now = time.monotonic()
            if now - self._last_write < PROGRESS_MIN_INTERVAL:
                self._flush_scheduled = True
                _flusher.schedule(self._last_write + PROGRESS_MIN_INTERVAL, self)
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
        transition = Transition("checkpoint", self.job.id, self.job.worker_id, self.job.lease, {"checkpoint": payload})
        try:
            took = self.store.transition(transition, self.clock.now())
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
                took = write_progress(
                    self.store, self.job.id, self.job.worker_id, self.job.lease, payload, self.clock.now()
                )
            except Exception as exc:
                log.warning("job %s: could not write progress: %s", self.job.id, exc)
                with self._lock:
                    # Keep it for the flusher or the completer, unless something newer is already waiting.
                    if self._pending is None:
                        self._pending = report
                        if not self._flush_scheduled:
                            self._flush_scheduled = True
                            _flusher.schedule(time.monotonic() + PROGRESS_MIN_INTERVAL, self)
                return
            if not took:
                self._lease_lost("progress")
                return
            self._written_seq = seq
            self.writes += 1
        self.emit({"type": "progress", "job_id": self.job.id, "name": self.job.name, **event})

    def _lease_lost(self, what: str) -> None:
        log.warning("job %s: lease lost; %s refused, cancelling the job", self.job.id, what)
        self.token.cancel("lease_lost")

"""Direct execution (``queue.execute``): run a job at once in this process, without storing it.

A direct run goes through the executor as a queued job does (its arguments validated and
round-tripped through JSON, ``BaseJob`` or a handler with its context, the token, the timeout,
the result dumped as JSON), on threads of its own beside the worker's pool, so it never waits
behind queued jobs and they never wait behind it. Its progress, result and error live in its
:class:`DirectHandle` only: nothing reaches the database, and nothing survives a restart. It runs
once: there is no row to retry from.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from jobkit._cancel import CancelToken
from jobkit._clock import Clock
from jobkit._handle import JobEvent
from jobkit._job import Checkpoint
from jobkit._json import loads
from jobkit._registry import JobType
from jobkit._runtime.executor import prepare, run_sync
from jobkit._runtime.outcome import Cancelled, Completed, Crashed, Failed, Outcome, Snoozed, error_entry
from jobkit._store import ClaimedJob
from jobkit._vocabulary import CancelReason, EventType, JobState
from jobkit.errors import JobCancelled, JobFailed, ResultTimeout

# Direct runs have ids of their own, negative so that they can never be taken for a stored job's.
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class DirectConfig:
    """How many direct runs may execute at once (more wait for a thread)."""

    concurrency: int

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")


class DirectHandle:
    """What ``queue.execute`` returns: ``result()``, ``stream()``, ``cancel()`` and ``status()``, as a JobHandle has.

    Example::

        handle = queue.execute(Resize, {"image_id": 7})
        for event in handle.stream(timeout=30):
            print(event.type, event.percent, event.stage)
        print(handle.result())
    """

    def __init__(self, job_id: int, name: str) -> None:
        self.id = job_id
        self.name = name
        self.token = CancelToken()
        self.last_checkpoint: Checkpoint | None = None
        self._status: str = JobState.RUNNING
        self._value: Any = None
        self._error: dict[str, Any] | None = None
        self._done = threading.Event()
        self._events: list[JobEvent] = []
        self._changed = threading.Condition()

    def status(self) -> str:
        """``running``, then ``completed``, ``failed`` or ``cancelled``."""
        return self._status

    def cancel(self) -> bool:
        """Fire the run's cancellation token; False if it had ended already."""
        if self._done.is_set():
            return False
        return self.token.cancel(CancelReason.CANCEL) or True

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run ends; its result, or :class:`JobFailed` / :class:`JobCancelled`."""
        if not self._done.wait(timeout):
            raise ResultTimeout(f"direct run {self.id} ({self.name}) did not end within {timeout}s")
        if self._status == JobState.FAILED:
            raise JobFailed(self.id, [self._error] if self._error else [])
        if self._status == JobState.CANCELLED:
            raise JobCancelled(self.id)
        return self._value

    def stream(self, timeout: float | None = None) -> Iterator[JobEvent]:
        """Every progress event, in order, then the final one (completed, failed or cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while True:
            with self._changed:
                while seen == len(self._events):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise ResultTimeout(f"direct run {self.id} ({self.name}) did not end within {timeout}s")
                    self._changed.wait(left)
                fresh = self._events[seen:]
                seen = len(self._events)
            yield from fresh
            if fresh and fresh[-1].type in (EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED):
                return

    # -- the runner's side (also the job's reporter) ----------------------------------------------

    def progress(self, percent: float, stage: str | None, message: str | None, data: dict[str, Any]) -> None:
        """Keep a progress event for the stream (the job's ``self.progress``)."""
        self._push(JobEvent(EventType.PROGRESS, self.id, percent, stage, message, dict(data), name=self.name))

    def checkpoint(self, stage: str, data: Any) -> None:
        """Keep the checkpoint in memory: a direct run has no later attempt to resume."""
        self.last_checkpoint = Checkpoint(stage, data)

    def end(self, outcome: Outcome) -> None:
        """Record how the run ended and wake every waiter."""
        match outcome:
            case Completed(result=text):
                self._value = loads(text)
                self._status = JobState.COMPLETED
                final = JobEvent(EventType.COMPLETED, self.id, result=self._value, name=self.name)
            case Failed(error=error) | Crashed(error=error):
                self._error, self._status = error, JobState.FAILED
                final = JobEvent(EventType.FAILED, self.id, error=error, name=self.name)
            case Cancelled():
                self._status = JobState.CANCELLED
                final = JobEvent(EventType.CANCELLED, self.id, name=self.name)
            case Snoozed(seconds=seconds):
                snooze = RuntimeError(f"{self.name}: asked to snooze {seconds:g}s, which a direct run cannot do")
                self.end(Failed(error_entry(snooze, 1, time.time()), retryable=False))
                return
        self._push(final)
        self._done.set()

    def _push(self, event: JobEvent) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()


class DirectRunner:
    """The threads direct runs execute on; ``start()`` / ``stop()`` as every service."""

    def __init__(self, config: DirectConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Create the threads (on first use, also without a call)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="jobkit-direct")

    def stop(self) -> None:
        """Cancel every run still going and wait for the threads to end."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job_type: JobType, args_json: str) -> DirectHandle:
        """Start one run of ``job_type`` with arguments already validated and dumped; returns its handle."""
        self.start()
        handle = DirectHandle(-next(_ids), job_type.name)
        now = self.clock.now()
        options = job_type.options
        row = ClaimedJob(
            handle.id, options.name, options.queue, options.priority, args_json, 1, 0, None, None, 0, 0, now, now
        )
        assert self._pool is not None
        self._pool.submit(self._run, handle, job_type, row)
        return handle

    def _run(self, handle: DirectHandle, job_type: JobType, row: ClaimedJob) -> None:
        timer = None
        if job_type.options.timeout is not None:
            timer = threading.Timer(job_type.options.timeout, handle.token.cancel, (CancelReason.TIMEOUT,))
            timer.daemon = True
            timer.start()
        try:
            prepared = prepare(row, job_type, handle.token, handle, self.clock)
            outcome = prepared if isinstance(prepared, Failed) else run_sync(prepared, self.clock)
        except BaseException as exc:  # the executor never raises; this keeps the handle from hanging if it did
            outcome = Failed(error_entry(exc, 1, self.clock.now()), retryable=False)
        finally:
            if timer is not None:
                timer.cancel()
        handle.end(outcome)

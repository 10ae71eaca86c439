"""JobHandle and JobInfo: what ``perform_later`` returns, usable from any process by job id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from jobkit._vocabulary import TERMINAL_STATES, EventType, JobState
from jobkit.errors import JobCancelled, JobFailed, JobNotFound, ResultTimeout

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of one job as stored; JSON columns decoded, times as aware datetimes."""

    id: int
    name: str
    queue: str
    priority: int
    status: str
    args: dict[str, Any]
    run_at: datetime
    created_at: datetime
    attempt: int
    max_retries: int
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    errors: list[dict[str, Any]]
    progress: dict[str, Any] | None
    checkpoint: dict[str, Any] | None
    cancel_requested: str | None
    crashes: int
    worker_id: str | None
    #: What could not be read in the stored row (invalid JSON, a time out of range, …), one note
    #: per problem; empty for a sound row. Damaged values are shown, never raised: unreadable JSON
    #: as ``{"__unreadable__": raw text}``, a required time out of range clamped, an optional one None.
    damaged: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """True for completed, failed and cancelled."""
        return self.status in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event about one job: ``progress``, ``completed``, ``failed``, ``cancelled`` or ``paused``.

    ``percent``, ``stage``, ``message`` and ``data`` are set on progress events,
    ``result`` on completed, ``error`` (the last error entry) on failed.
    """

    #: An :class:`EventType` (a ``str``: ``event.type == "progress"`` holds).
    type: EventType
    job_id: int
    percent: float | None = None
    stage: str | None = None
    message: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: dict[str, Any] | None = None
    name: str | None = None


class JobWatch(Protocol):
    """A waiter's interest in one job: ``wait`` returns early when the job may have changed."""

    @property
    def live(self) -> bool:
        """True while changes made by any process are pushed (PostgreSQL LISTEN); else poll."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; returns whether a change was signalled."""
        ...

    async def wait_async(self, timeout: float) -> bool:
        """Async twin of :meth:`wait`."""
        ...

    def close(self) -> None:
        """Stop watching."""
        ...


class HandleBackend(Protocol):
    """What a handle needs from the queue; :class:`~jobkit.JobQueue` implements it."""

    def job_info(self, job_id: int) -> JobInfo | None:
        """The job's snapshot, or None."""
        ...

    def job_why(self, job_id: int) -> str | None:
        """Why the job is waiting, in one line, or None when it does not exist."""
        ...

    def job_status(self, job_id: int) -> str | None:
        """Just the job's status, or None."""
        ...

    def cancel_job(self, job_id: int) -> str | None:
        """Cancel; returns the resulting state."""
        ...

    def kill_job(self, job_id: int) -> str | None:
        """Kill; returns the resulting state."""
        ...

    def pause_job(self, job_id: int) -> str | None:
        """Pause; returns the resulting state."""
        ...

    def resume_job(self, job_id: int) -> str | None:
        """Resume; returns the resulting state."""
        ...

    def retry_job(self, job_id: int) -> bool:
        """Retry a failed or cancelled job now."""
        ...

    def watch(self, job_id: int) -> JobWatch:
        """Start watching a job for changes; the caller closes the watch."""
        ...


#: While changes are pushed, a waiting handle still re-reads this often, for changes nobody
#: announced (a rescue by another worker) and in case the push connection silently died.
PUSHED_RECHECK = 1.0

#: The longest poll delay while changes are not pushed: ``result`` reads the status only,
#: ``stream`` the whole job, and a stream should show progress promptly.
RESULT_POLL_CAP = 0.1
STREAM_POLL_CAP = 0.05


def _poll_delays(start: float = 0.005, cap: float = 0.1) -> Iterator[float]:
    delay = start
    while True:
        yield delay
        delay = min(cap, delay * 1.5)


class JobHandle:
    """A reference to one enqueued job, by id; works from any process.

    Waiting (``result``, ``wait``, ``stream``, ``events``) wakes on PostgreSQL NOTIFY when the
    job changes, and polls at a short interval on SQLite.

    Example::

        handle = SendEmail.perform_later(to="a@b.c", subject="hi")
        for event in handle.stream(timeout=60):
            print(event.type, event.percent, event.stage)
        handle.result(timeout=30)      # the result; raises JobFailed / JobCancelled
    """

    __slots__ = ("_backend", "duplicate", "id")

    def __init__(self, job_id: int, backend: HandleBackend, *, duplicate: bool = False) -> None:
        self.id = job_id
        self._backend = backend
        #: True when a unique job's enqueue found this existing job instead of creating one.
        self.duplicate = duplicate

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("JobHandle", self.id))

    def status(self) -> str:
        """The current status: pending, running, completed, failed, cancelled or paused."""
        status = self._backend.job_status(self.id)
        if status is None:
            raise JobNotFound(f"job {self.id} does not exist")
        return status

    def refresh(self) -> JobInfo:
        """Read the job's full current state."""
        info = self._backend.job_info(self.id)
        if info is None:
            raise JobNotFound(f"job {self.id} does not exist")
        return info

    def progress(self) -> dict[str, Any] | None:
        """The last persisted progress report (``percent``, ``stage``, ``message``, ``data``, …), or None."""
        return self.refresh().progress

    def cancel(self) -> str | None:
        """Cancel: a pending or paused job at once (``cancelled``), a running one through its token (``cancelling``)."""
        return self._backend.cancel_job(self.id)

    def kill(self) -> str | None:
        """End the job now, whatever it is doing: a pending or paused one at once (``cancelled``), a
        running one by having its worker abandon the attempt (``killing``); it ends ``cancelled``.

        Unlike :meth:`cancel` this does not wait for the job to check its token, and it wins over
        any other request standing on the job.
        """
        return self._backend.kill_job(self.id)

    def pause(self) -> str | None:
        """Pause: a pending job is held (``paused``); a running one stops at its next token check (``pausing``)."""
        return self._backend.pause_job(self.id)

    def resume(self) -> str | None:
        """Put a paused job back to ``pending``; it continues from its last checkpoint."""
        return self._backend.resume_job(self.id)

    def retry(self) -> bool:
        """Run a failed or cancelled job again now, keeping its error history and checkpoint."""
        return self._backend.retry_job(self.id)

    def why(self) -> str:
        """Why this job is waiting, in one line: scheduled for later, queue paused, no worker for it, ...

        A duplicate handle (a unique job that was enqueued again) says so, then why the job it names waits.
        """
        line = self._backend.job_why(self.id)
        if line is None:
            raise JobNotFound(f"job {self.id} does not exist")
        return f"duplicate of job {self.id}: {line}" if self.duplicate else line

    def _outcome(self, info: JobInfo) -> Any:
        if info.status == JobState.COMPLETED:
            return info.result
        if info.status == JobState.FAILED:
            raise JobFailed(self.id, info.errors)
        raise JobCancelled(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the job ends; return its result, or raise JobFailed / JobCancelled / ResultTimeout.

        A paused job has not ended: ``result`` keeps waiting for it to be resumed and finish.
        """
        with _Wait(self, timeout, RESULT_POLL_CAP) as wait:
            while True:
                status = wait.read(self.status)
                if status in TERMINAL_STATES:
                    return self._outcome(self.refresh())
                wait.pause(status)

    async def wait(self, timeout: float | None = None) -> Any:
        """Async twin of :meth:`result`."""
        with _Wait(self, timeout, RESULT_POLL_CAP) as wait:
            while True:
                status = await wait.read_async(self.status)
                if status in TERMINAL_STATES:
                    return self._outcome(await asyncio.to_thread(self.refresh))
                await wait.pause_async(status)

    def stream(self, timeout: float | None = None, *, until_paused: bool = False) -> Iterator[JobEvent]:
        """Yield progress events, every stage in order, then the final event; stops when the job ends.

        The final event is ``completed`` (with ``result``), ``failed`` (with ``error``) or
        ``cancelled``. A pause yields a ``paused`` event and the stream goes on waiting for
        the job to be resumed, unless ``until_paused`` is set, which ends the stream there.
        """
        tracker = _EventTracker(self.id)
        with _Wait(self, timeout, STREAM_POLL_CAP) as wait:
            while True:
                info = wait.read(self.refresh)
                yield from tracker.feed(info)
                if info.terminal or (until_paused and info.status == JobState.PAUSED):
                    return
                wait.pause(info.status)

    async def events(self, timeout: float | None = None, *, until_paused: bool = False) -> AsyncIterator[JobEvent]:
        """Async twin of :meth:`stream`: ``async for event in handle.events(): ...``."""
        tracker = _EventTracker(self.id)
        with _Wait(self, timeout, STREAM_POLL_CAP) as wait:
            while True:
                info = await wait.read_async(self.refresh)
                for event in tracker.feed(info):
                    yield event
                if info.terminal or (until_paused and info.status == JobState.PAUSED):
                    return
                await wait.pause_async(info.status)


class _Wait:
    """The one wait loop of a handle: read the job, and pause until it may have changed or the deadline.

    Each round reads whether changes are pushed *before* reading the job (a change after the
    read is then pushed, and ends the pause at once), then pauses: for ``PUSHED_RECHECK``
    while pushed, else for a poll delay that grows from 5 ms to ``cap``; never past the
    deadline, where :meth:`pause` raises ResultTimeout instead.
    """

    def __init__(self, handle: JobHandle, timeout: float | None, cap: float) -> None:
        self._job_id = handle.id
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._delays = _poll_delays(cap=cap)
        self._watch = handle._backend.watch(handle.id)
        self._live = False

    def __enter__(self) -> _Wait:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._watch.close()

    def read(self, read: Callable[[], T]) -> T:
        """Begin a round: note whether changes are pushed, then read the job with ``read``."""
        self._live = self._watch.live
        return read()

    async def read_async(self, read: Callable[[], T]) -> T:
        """Async twin of :meth:`read` (``read`` runs in a thread)."""
        self._live = self._watch.live
        return await asyncio.to_thread(read)

    def pause(self, status: str) -> None:
        """End the round: wait for a change or the next poll; raise ResultTimeout past the deadline."""
        self._watch.wait(self._next_pause(status))

    async def pause_async(self, status: str) -> None:
        """Async twin of :meth:`pause`."""
        await self._watch.wait_async(self._next_pause(status))

    def _next_pause(self, status: str) -> float:
        delay = next(self._delays)
        remaining = None if self._deadline is None else self._deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise ResultTimeout(f"job {self._job_id} still {status} after {self._timeout}s")
        pause = PUSHED_RECHECK if self._live else delay
        return pause if remaining is None else min(pause, remaining)


class _EventTracker:
    """Turns successive snapshots into events without repeating or skipping a stage.

    Progress is identified by ``(lease, seq)``: ``seq`` restarts with every attempt, and the
    attempt's stage log (``stages``, the last ones of ``stage_count`` in all) lets the tracker
    replay the stages that changed between two snapshots.
    """

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.key: tuple[Any, Any] | None = None
        self.lease: Any = None
        self.stages_seen = 0
        self.paused_seen = False

    def feed(self, info: JobInfo) -> Iterator[JobEvent]:
        progress = info.progress or {}
        key = (progress.get("lease"), progress.get("seq"))
        if progress and key != self.key:
            if progress.get("lease") != self.lease:
                self.lease = progress.get("lease")
                self.stages_seen = 0
            # Read defensively: a damaged progress value must not break a stream.
            raw_stages = progress.get("stages")
            stages: list[Any] = raw_stages if isinstance(raw_stages, list) else []
            raw_count = progress.get("stage_count", len(stages))
            count = raw_count if isinstance(raw_count, int) and raw_count >= len(stages) else len(stages)
            first = count - len(stages)  # stage number of stages[0]
            for number in range(max(self.stages_seen, first), count - 1):
                yield JobEvent(
                    type=EventType.PROGRESS, job_id=self.job_id, stage=stages[number - first], name=info.name
                )
            self.stages_seen = max(self.stages_seen, count)
            self.key = key
            yield JobEvent(
                type=EventType.PROGRESS,
                job_id=self.job_id,
                percent=progress.get("percent"),
                stage=progress.get("stage"),
                message=progress.get("message"),
                data=progress["data"] if isinstance(progress.get("data"), dict) else {},
                name=info.name,
            )
        if info.status == JobState.PAUSED and not self.paused_seen:
            self.paused_seen = True
            yield JobEvent(type=EventType.PAUSED, job_id=self.job_id, name=info.name)
        elif info.status != JobState.PAUSED:
            self.paused_seen = False
        if info.status == JobState.COMPLETED:
            yield JobEvent(type=EventType.COMPLETED, job_id=self.job_id, result=info.result, name=info.name)
        elif info.status == JobState.FAILED:
            yield JobEvent(
                type=EventType.FAILED,
                job_id=self.job_id,
                error=info.errors[-1] if info.errors else None,
                name=info.name,
            )
        elif info.status == JobState.CANCELLED:
            yield JobEvent(type=EventType.CANCELLED, job_id=self.job_id, name=info.name)

"""Helpers for testing applications that use jobkit; ``jobkit.pytest_plugin`` wraps them as fixtures.

Example::

    def test_signup_sends_welcome(jobkit_queue):
        signup("a@b.c")
        assert_enqueued(jobkit_queue, SendWelcome, args={"to": "a@b.c"})
        refute_enqueued(jobkit_queue, SendReminder)
        perform_enqueued_jobs(jobkit_queue)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobkit._clock import FakeClock
from jobkit._enqueue import CallOptions
from jobkit._handle import JobHandle, JobInfo
from jobkit._job import BaseJob
from jobkit._queue import JobQueue
from jobkit._registry import JobType
from jobkit._settings import load_settings
from jobkit._vocabulary import JobState
from jobkit.errors import JobFailed

__all__ = [
    "FakeClock",
    "InlineQueue",
    "assert_enqueued",
    "enqueued_jobs",
    "isolated_queue",
    "perform_enqueued_jobs",
    "refute_enqueued",
]

#: Rounds of "run what is due, then bring retries forward" one inline enqueue may take.
MAX_INLINE_ROUNDS = 1_000


class InlineQueue(JobQueue):
    """A queue that runs each job in the caller as soon as it is enqueued (through the real store).

    A job that fails is retried at once, as its policy allows (on a :class:`FakeClock` the
    backoff is skipped by moving the clock), and its final error is raised in the caller as
    :class:`~jobkit.JobFailed`, so a test sees it rather than a silently failed row.
    """

    def enqueue_jobs(
        self, job_type: JobType, args_list: list[dict[str, Any]], call: CallOptions, connection: Any
    ) -> list[JobHandle]:
        """Enqueue, run every due job and the retries of these ones, then raise the first final failure."""
        handles = super().enqueue_jobs(job_type, args_list, call, connection)
        if connection is None:  # inside a transaction the rows are not visible until the caller commits
            self._run_inline(handles)
        return handles

    def _run_inline(self, handles: list[JobHandle]) -> None:
        for _ in range(MAX_INLINE_ROUNDS):
            self.drain()
            infos = [h.refresh() for h in handles]
            # A job that ran and is pending again waits for its backoff: in inline mode its time is now.
            retrying = [i.run_at.timestamp() for i in infos if i.status == JobState.PENDING and i.started_at]
            if not retrying or not isinstance(self.clock, FakeClock):
                break
            ahead = min(retrying) - self.clock.now()
            self.clock.advance(max(ahead, 0.0) + 0.001)
        for info in (h.refresh() for h in handles):
            if info.status == JobState.FAILED:
                raise JobFailed(info.id, info.errors)


@contextmanager
def isolated_queue(
    directory: Path | str, *, mode: str = "manual", clock: FakeClock | None = None, **settings: Any
) -> Iterator[JobQueue]:
    """A queue on a fresh SQLite file, installed as the process-wide queue for the block.

    ``mode="manual"``: jobs wait until :func:`perform_enqueued_jobs`. ``mode="inline"``: they run at
    enqueue, retries included (on a fake clock of its own unless ``clock`` is given), and a job's
    final failure is raised in the caller.
    """
    if mode not in ("manual", "inline"):
        raise ValueError(f"mode must be 'manual' or 'inline', got {mode!r}")
    settings.setdefault("database_url", f"sqlite:///{Path(directory) / 'jobkit-test.sqlite3'}")
    if mode == "inline" and clock is None:
        clock = FakeClock()
    cls = InlineQueue if mode == "inline" else JobQueue
    queue = cls(load_settings(**settings), clock=clock)
    previous = JobQueue._instance
    JobQueue.set_instance(queue)
    try:
        yield queue
    finally:
        queue.close()
        JobQueue.set_instance(previous)


def _name(job: type[BaseJob[Any]] | str) -> str:
    return job if isinstance(job, str) else job.job_type().name


def enqueued_jobs(
    queue: JobQueue, job: type[BaseJob[Any]] | str | None = None, *, status: str = "pending"
) -> list[JobInfo]:
    """The jobs in ``status`` (pending: enqueued and not run yet), of one type or all, oldest first.

    Example::

        assert [j.args for j in enqueued_jobs(jobkit_queue, SendWelcome)] == [{"to": "a@b.c"}]
    """
    return list(reversed(queue.jobs(name=None if job is None else _name(job), status=status, limit=10_000)))


def enqueued(queue: JobQueue, job: type[BaseJob[Any]] | str, *, status: str = "pending") -> list[JobInfo]:
    """The jobs of one type in ``status``, oldest first (an alias of :func:`enqueued_jobs`)."""
    return enqueued_jobs(queue, job, status=status)


def _matching(found: list[JobInfo], args: dict[str, Any] | None) -> list[JobInfo]:
    if args is None:
        return found
    return [info for info in found if all(info.args.get(k) == v for k, v in args.items())]


def _what_is_enqueued(queue: JobQueue) -> str:
    """Every pending job, one line each, for a failed assertion's message."""
    pending = enqueued_jobs(queue)
    if not pending:
        return "nothing is enqueued"
    shown = pending[:20]
    lines = [f"  {info.name} {json.dumps(info.args, default=str)} (queue {info.queue})" for info in shown]
    more = f"\n  ... and {len(pending) - len(shown)} more" if len(pending) > len(shown) else ""
    return f"enqueued ({len(pending)}):\n" + "\n".join(lines) + more


def assert_enqueued(
    queue: JobQueue, job: type[BaseJob[Any]] | str, *, args: dict[str, Any] | None = None, count: int | None = None
) -> list[JobInfo]:
    """Assert that jobs of this type are pending (with these arguments, this many); returns them.

    When it fails, the message lists every pending job with its arguments.
    """
    found = _matching(enqueued_jobs(queue, job), args)
    wanted = f"{_name(job)} job{'s' if count != 1 and count is not None else ''}{f' with {args}' if args else ''}"
    if count is None and not found:
        raise AssertionError(f"expected a pending {wanted}, found none; {_what_is_enqueued(queue)}")
    if count is not None and len(found) != count:
        raise AssertionError(f"expected {count} pending {wanted}, found {len(found)}; {_what_is_enqueued(queue)}")
    return found


def refute_enqueued(queue: JobQueue, job: type[BaseJob[Any]] | str, *, args: dict[str, Any] | None = None) -> None:
    """Assert that no job of this type (with these arguments) is pending.

    Example::

        refute_enqueued(jobkit_queue, SendWelcome, args={"to": "blocked@b.c"})
    """
    found = _matching(enqueued_jobs(queue, job), args)
    if found:
        shown = ", ".join(f"{info.id} {json.dumps(info.args, default=str)}" for info in found[:10])
        raise AssertionError(
            f"expected no pending {_name(job)} job{f' with {args}' if args else ''}, found {len(found)}: {shown}"
        )


def perform_enqueued_jobs(queue: JobQueue) -> int:
    """Run every due job (and any they enqueue) in the caller; returns how many ran."""
    return queue.drain()

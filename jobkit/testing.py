"""Helpers for testing applications that use jobkit; ``jobkit.pytest_plugin`` wraps them as fixtures.

Example::

    def test_signup_sends_welcome(jobkit_queue):
        signup("a@b.c")
        assert_enqueued(jobkit_queue, SendWelcome, args={"to": "a@b.c"})
        perform_enqueued_jobs(jobkit_queue)
"""

from __future__ import annotations

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

__all__ = ["FakeClock", "InlineQueue", "assert_enqueued", "isolated_queue", "perform_enqueued_jobs"]


class InlineQueue(JobQueue):
    """A queue that runs each job in the caller as soon as it is enqueued (through the real store)."""

    def enqueue_jobs(
        self, job_type: JobType, args_list: list[dict[str, Any]], call: CallOptions, connection: Any
    ) -> list[JobHandle]:
        """Enqueue, then run every due job before returning."""
        handles = super().enqueue_jobs(job_type, args_list, call, connection)
        if connection is None:
            self.drain()
        return handles


@contextmanager
def isolated_queue(
    directory: Path | str, *, mode: str = "manual", clock: FakeClock | None = None, **settings: Any
) -> Iterator[JobQueue]:
    """A queue on a fresh SQLite file, installed as the process-wide queue for the block.

    ``mode="manual"``: jobs wait until :func:`perform_enqueued_jobs`. ``mode="inline"``: they run at enqueue.
    """
    if mode not in ("manual", "inline"):
        raise ValueError(f"mode must be 'manual' or 'inline', got {mode!r}")
    settings.setdefault("database_url", f"sqlite:///{Path(directory) / 'jobkit-test.sqlite3'}")
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


def enqueued(queue: JobQueue, job: type[BaseJob[Any]] | str, *, status: str = "pending") -> list[JobInfo]:
    """The jobs of one type in ``status``, oldest first."""
    return list(reversed(queue.jobs(name=_name(job), status=status, limit=10_000)))


def assert_enqueued(
    queue: JobQueue, job: type[BaseJob[Any]] | str, *, args: dict[str, Any] | None = None, count: int | None = None
) -> list[JobInfo]:
    """Assert that jobs of this type are pending (with these arguments, this many); returns them."""
    found = enqueued(queue, job)
    if args is not None:
        found = [info for info in found if all(info.args.get(k) == v for k, v in args.items())]
    if count is None and not found:
        raise AssertionError(f"expected a pending {_name(job)} job{f' with {args}' if args else ''}, found none")
    if count is not None and len(found) != count:
        raise AssertionError(
            f"expected {count} pending {_name(job)} jobs{f' with {args}' if args else ''}, found {len(found)}"
        )
    return found


def perform_enqueued_jobs(queue: JobQueue) -> int:
    """Run every due job (and any they enqueue) in the caller; returns how many ran."""
    return queue.drain()

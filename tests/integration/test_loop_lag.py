"""An async job that blocks the worker's event loop is named in the log, with the cure."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import jobkit
from jobkit import JobQueue
from tests.conftest import FAST
from tests.jobs import AsyncDouble
from tests.proc_jobs import BlocksLoop


@pytest.fixture
def lag_queue(db_url: str) -> Iterator[JobQueue]:
    """A worker whose loop watch reports lag over 0.3 s."""
    q = jobkit.configure(database_url=db_url, concurrency=2, loop_lag_threshold=0.3, **FAST)
    q.start()
    try:
        yield q
    finally:
        q.close()
        JobQueue.set_instance(None)


def test_a_blocking_async_job_is_logged_with_its_id_and_name(
    lag_queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """time.sleep inside async def perform: one warning naming the job and isolation='process'."""
    caplog.set_level(logging.WARNING, logger="jobkit.worker")
    handle = BlocksLoop.perform_later(seconds=1.5)
    assert handle.result(timeout=30) == "blocked"
    lines = [r.getMessage() for r in caplog.records if "blocked the async event loop" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"job {handle.id} proc.blocks_loop" in lines[0] and "isolation='process'" in lines[0]
    watch = lag_queue.worker.pool.loop_watch
    assert watch is not None and watch.blocked == 1


def test_async_jobs_that_await_are_not_reported(lag_queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    """Well-behaved async jobs never trip the watch."""
    caplog.set_level(logging.WARNING, logger="jobkit.worker")
    handles = AsyncDouble.perform_all_later([{"n": n} for n in range(20)])
    assert [h.result(timeout=30) for h in handles] == [2 * n for n in range(20)]
    assert not [r for r in caplog.records if "event loop" in r.getMessage()]

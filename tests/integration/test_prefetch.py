"""Prefetch: a worker claims a few jobs ahead while jobs turn over fast, and never hoards them.

Run on SQLite and PostgreSQL with real worker threads (and, for the hand-back, two workers).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

import jobkit
from jobkit import BaseJob, JobQueue, job
from jobkit._runtime.worker import PREFETCH_MAX_WAIT
from tests.conftest import FAST

_lock = threading.Lock()
_now = {"running": 0, "peak": 0}


class Nap(BaseModel):
    seconds: float


def _enter() -> None:
    with _lock:
        _now["running"] += 1
        _now["peak"] = max(_now["peak"], _now["running"])


def _leave() -> None:
    with _lock:
        _now["running"] -= 1


@job(name="tests.prefetch.sync_nap", schema=Nap, max_retries=0)
class SyncNap(BaseJob[Nap]):
    def perform(self, args: Nap) -> None:
        _enter()
        try:
            self.cancel_token.wait(args.seconds)
        finally:
            _leave()


@job(name="tests.prefetch.async_nap", schema=Nap, max_retries=0)
class AsyncNap(BaseJob[Nap]):
    async def perform(self, args: Nap) -> None:
        _enter()
        try:
            await asyncio.sleep(args.seconds)
        finally:
            _leave()


class Recorder:
    """Every event of one queue, in order."""

    def __init__(self, queue: JobQueue) -> None:
        self.seen: list[dict[str, Any]] = []
        self.cv = threading.Condition()
        queue.subscribe(self._add)

    def _add(self, event: dict[str, Any]) -> None:
        with self.cv:
            self.seen.append(event)
            self.cv.notify_all()

    def wait(self, job_id: int, kind: str, timeout: float = 15.0) -> float:
        """Block until ``kind`` was seen for ``job_id``; returns when this process saw it."""
        with self.cv:
            assert self.cv.wait_for(
                lambda: any(e["job_id"] == job_id and e["type"] == kind for e in self.seen), timeout
            ), f"no {kind} event for job {job_id}"
        return time.monotonic()


def test_sync_and_async_jobs_together_never_exceed_concurrency(queue: JobQueue) -> None:
    """Prefetched jobs wait for a slot: 40 mixed jobs at concurrency 5 never run more than 5 at once."""
    _now.update(running=0, peak=0)
    handles = []
    for i in range(40):
        kind = SyncNap if i % 2 else AsyncNap
        handles.append(kind.perform_later(seconds=0.02))
    queue.start()
    for handle in handles:
        handle.result(timeout=30)
    assert _now["peak"] == 5
    assert queue.worker.peak_running == 5


def test_a_prefetched_job_is_handed_back_when_the_slots_stay_busy(db_url: str) -> None:
    """A job claimed ahead behind a long job goes back to the queue and another worker runs it."""
    first = jobkit.JobQueue(database_url=db_url, concurrency=1, **FAST)
    jobkit.JobQueue.set_instance(first)
    second: JobQueue | None = None
    try:
        # Quick jobs make the worker turn over fast, so it claims one ahead of its single slot;
        # the long job then takes the slot with the marker prefetched behind it.
        quick = SyncNap.perform_all_later([{"seconds": 0} for _ in range(40)])
        long = SyncNap.set(priority=1).perform_later(seconds=6)
        marker = SyncNap.set(priority=2).perform_later(seconds=0)
        events = Recorder(first)
        first.start()
        for handle in quick:
            handle.result(timeout=30)
        events.wait(long.id, "started")
        claimed = {e["job_id"] for e in events.seen if e["type"] == "started"}
        if marker.id in claimed:
            pytest.skip("the marker started before the long job (no prefetch happened this run)")
        released_at = events.wait(marker.id, "released", timeout=PREFETCH_MAX_WAIT + 3)
        assert marker.status() == "pending"
        second = jobkit.JobQueue(database_url=db_url, concurrency=1, **FAST)
        second.start()
        assert marker.result(timeout=10) is None
        assert time.monotonic() - released_at < 3
        assert long.status() == "running"  # the marker did not wait for the long job
        info = marker.refresh()
        assert info.attempt == 1  # handing back did not spend an attempt
    finally:
        if second is not None:
            second.close()
        first.close()
        JobQueue.set_instance(None)

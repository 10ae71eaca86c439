"""Prefetch: a worker claims a few jobs ahead while jobs turn over fast, and never hoards them.

Run on SQLite and PostgreSQL with real worker threads (and, for the hand-back, two workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

import jobkit
from jobkit import BaseJob, JobCancelled, JobHandle, JobQueue, job
from jobkit._runtime.worker import PREFETCH_MAX_WAIT
from tests.conftest import FAST
from tests.observe import EventLog

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


@contextlib.contextmanager
def marker_behind_a_long_job(db_url: str) -> Iterator[tuple[JobQueue, EventLog, JobHandle, JobHandle]]:
    """A worker with one slot, running a long job, with a marker job prefetched behind it."""
    first = jobkit.JobQueue(database_url=db_url, concurrency=1, **FAST)
    jobkit.JobQueue.set_instance(first)
    try:
        # Quick jobs make the worker turn over fast, so it claims one ahead of its single slot;
        # the long job then takes the slot with the marker prefetched behind it.
        quick = SyncNap.perform_all_later([{"seconds": 0} for _ in range(40)])
        long = SyncNap.set(priority=1).perform_later(seconds=6)
        marker = SyncNap.set(priority=2).perform_later(seconds=0)
        events = EventLog(first)
        first.start()
        for handle in quick:
            handle.result(timeout=30)
        events.wait_for(long.id, "started")
        if events.of(marker.id, "started"):
            pytest.skip("the marker started before the long job (no prefetch happened this run)")
        yield first, events, long, marker
    finally:
        first.close()
        JobQueue.set_instance(None)


def test_a_prefetched_job_is_handed_back_when_the_slots_stay_busy(db_url: str) -> None:
    """A job claimed ahead behind a long job goes back to the queue and another worker runs it."""
    second: JobQueue | None = None
    with marker_behind_a_long_job(db_url) as (_, events, long, marker):
        try:
            events.wait_for(marker.id, "released", timeout=PREFETCH_MAX_WAIT + 3)
            released_at = time.monotonic()
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


def test_cancelling_a_prefetched_job_ends_it_without_waiting_for_a_slot(db_url: str) -> None:
    """cancel() on a job held in the prefetch buffer cancels it at once; it never starts."""
    with marker_behind_a_long_job(db_url) as (_, events, long, marker):
        asked = time.monotonic()
        assert marker.cancel() == "cancelling"  # held by the worker: the worker ends it
        with pytest.raises(JobCancelled):
            marker.result(timeout=PREFETCH_MAX_WAIT + 3)
        assert time.monotonic() - asked < PREFETCH_MAX_WAIT  # the cancel, not the hand-back, ended it
        assert marker.status() == "cancelled"
        assert not events.of(marker.id, "started") and not events.of(marker.id, "released")
        assert long.status() == "running"


def test_prefetch_off_claims_only_into_free_slots(db_url: str) -> None:
    """With prefetch=False a busy single-slot worker holds nothing beyond the job it runs."""
    queue = jobkit.JobQueue(database_url=db_url, concurrency=1, prefetch=False, **FAST)
    jobkit.JobQueue.set_instance(queue)
    try:
        quick = SyncNap.perform_all_later([{"seconds": 0} for _ in range(40)])
        long = SyncNap.set(priority=1).perform_later(seconds=6)
        marker = SyncNap.set(priority=2).perform_later(seconds=0)
        events = EventLog(queue)
        queue.start()
        for handle in quick:
            handle.result(timeout=30)
        events.wait_for(long.id, "started")
        time.sleep(0.3)  # several claim chances while the slot is busy
        assert marker.status() == "pending"
        assert queue.stats()["by_status"].get("running") == 1
    finally:
        queue.close()
        JobQueue.set_instance(None)

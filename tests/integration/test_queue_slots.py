"""Named queues with slots of their own in one worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import jobkit
from jobkit import JobQueue
from tests.conftest import FAST
from tests.unique_jobs import Gated, gates, ran, running


@pytest.fixture
def slotted(db_url: str) -> Iterator[JobQueue]:
    """A queue whose worker gives "slow" 1 slot and "fast" 2."""
    gates.clear()
    ran.clear()
    running.update(now=0, peak=0)
    q = jobkit.configure(database_url=db_url, queues={"slow": 1, "fast": 2}, **FAST)
    try:
        yield q
    finally:
        for gate in gates.values():
            gate.set()
        q.stop(grace=5)
        q.close()
        JobQueue.set_instance(None)


def test_a_slow_queue_does_not_starve_a_fast_one(slotted: JobQueue) -> None:
    """Three blocked jobs on "slow" hold its one slot only: every "fast" job runs meanwhile."""
    gates["slow"] = threading.Event()
    slow = [Gated.set(queue="slow").perform_later(gate="slow", tag=i) for i in range(3)]
    fast = [Gated.set(queue="fast").perform_later(tag=10 + i) for i in range(6)]
    slotted.start()
    assert [handle.result(timeout=20) for handle in fast] == list(range(10, 16))
    assert [handle.status() for handle in slow].count("running") == 1
    assert [handle.status() for handle in slow].count("pending") == 2
    gates["slow"].set()
    assert [handle.result(timeout=20) for handle in slow] == [0, 1, 2]


def test_each_queue_runs_at_most_its_slots(slotted: JobQueue) -> None:
    """With every job blocked, "fast" runs two at once and "slow" one: three in all, never more."""
    gates["all"] = threading.Event()
    handles = [Gated.set(queue=q).perform_later(gate="all", tag=i) for i in range(4) for q in ("slow", "fast")]
    slotted.start()
    for _ in range(100):
        if running["now"] == 3:
            break
        threading.Event().wait(0.1)
    states = {q: [h.status() for h in handles[i::2]] for i, q in enumerate(("slow", "fast"))}
    assert states["slow"].count("running") == 1 and states["fast"].count("running") == 2
    gates["all"].set()
    for handle in handles:
        handle.result(timeout=20)
    assert running["peak"] == 3


def test_priorities_hold_within_a_queue(slotted: JobQueue) -> None:
    """One slot: the queue's jobs start in priority order, whatever order they were enqueued in."""
    for priority in (5, 0, 3, -1):
        Gated.set(queue="slow", priority=priority).perform_later(tag=priority)
    slotted.start()
    for _ in range(200):
        if len(ran) == 4:
            break
        threading.Event().wait(0.05)
    assert [tag for _, tag in ran] == [-1, 0, 3, 5]

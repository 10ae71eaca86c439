"""queue.observe: synchronous observers (metrics, tracing) see every event with the attempt behind it."""

from __future__ import annotations

import threading

from jobkit import JobQueue
from jobkit._vocabulary import Event, EventType
from tests.jobs import AddOne, Flaky


def test_an_observer_sees_the_attempt_behind_worker_events(queue: JobQueue) -> None:
    """Started and ending events carry the claimed job (queue, attempt, run_at) and the time it ran."""
    seen: list[tuple[Event, str]] = []
    untap = queue.observe(lambda event: seen.append((event, threading.current_thread().name)))
    handle = Flaky.set(queue="q1").perform_later(times=1)
    queue.drain()
    untap()
    kinds = [event.type for event, _ in seen if event.job_id == handle.id]
    assert kinds == [EventType.ENQUEUED, EventType.STARTED, EventType.RETRYING, EventType.STARTED, EventType.COMPLETED]
    enqueued, *attempts = [event for event, _ in seen if event.job_id == handle.id]
    assert enqueued.job is None and enqueued["queue"] == "q1"
    for event in attempts:
        assert event.job is not None
        assert (event.job.id, event.job.queue, event.job.name) == (handle.id, "q1", "tests.flaky")
    assert [e.job.attempt for e in attempts if e.job is not None] == [1, 1, 2, 2]
    ends = [e for e in attempts if e.type is not EventType.STARTED]
    assert all(e.ran is not None and e.ran >= 0 for e in ends)
    # Hidden from the mapping: listeners written against dicts see what they saw before.
    assert "job" not in dict(ends[-1]) and "ran" not in dict(ends[-1])


def test_removed_and_failing_observers(queue: JobQueue) -> None:
    """A raising observer is logged and stays tapped; a removed one hears nothing more."""
    calls: list[EventType] = []

    def broken(event: Event) -> None:
        calls.append(event.type)
        raise RuntimeError("observer bug")

    untap = queue.observe(broken)
    first = AddOne.perform_later(n=1)
    queue.drain()
    assert first.result(timeout=5) == 2
    assert calls == [EventType.ENQUEUED, EventType.STARTED, EventType.COMPLETED]
    untap()
    AddOne.perform_later(n=2)
    queue.drain()
    assert len(calls) == 3

"""queue.subscribe: state events for every job, and listeners that can neither slow nor break the worker."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jobkit import JobQueue
from jobkit._events import EventBus
from tests.jobs import AddOne, Flaky
from tests.long_jobs import ImportDocument, QuickStages
from tests.observe import EventLog


def test_subscriber_sees_a_jobs_life_in_order(queue: JobQueue, events: EventLog) -> None:
    """enqueued, started, completed (with the result), in that order."""
    handle = AddOne.perform_later(n=1)
    queue.drain()
    completed = events.wait_for(handle.id, "completed")
    assert [e["type"] for e in events.of(handle.id)] == ["enqueued", "started", "completed"]
    assert (completed["result"], completed["name"], completed["attempt"]) == (2, "tests.add_one", 1)


def test_retrying_and_failed_events_carry_the_error(queue: JobQueue, events: EventLog) -> None:
    """Each failed attempt with retries left is 'retrying'; the last one is 'failed'; both name the error."""
    handle = Flaky.perform_later(times=10)
    queue.drain()
    failed = events.wait_for(handle.id, "failed")
    retrying = events.of(handle.id, "retrying")
    assert [e["attempt"] for e in retrying] == [1, 2, 3]
    assert failed["attempt"] == 4
    assert failed["error"] == {"type": "RuntimeError", "message": "boom on attempt 4"}


def test_progress_events_carry_percent_stage_message_and_data(queue: JobQueue, events: EventLog) -> None:
    """A progress event has the job's percent, stage, message and extra data."""
    handle = QuickStages.perform_later(stages=["fetch", "parse"])
    queue.drain()
    event = events.wait_for(handle.id, "progress", stage="parse")
    assert (event["percent"], event["message"], event["data"]) == (50, "stage 2", {"index": 1})


def test_pausing_a_running_job_emits_paused_then_resumed(queue: JobQueue, events: EventLog, tmp_path: Path) -> None:
    """A paused running job emits 'paused'; resume emits 'resumed', then it starts again and completes."""
    (tmp_path / "hold-transform").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc="one two", control=str(tmp_path))
    events.wait_for(handle.id, "progress", stage="transform")
    handle.pause()
    events.wait_for(handle.id, "paused")
    (tmp_path / "hold-transform").unlink()
    handle.resume()
    events.wait_for(handle.id, "completed")
    kinds = [e["type"] for e in events.of(handle.id) if e["type"] != "progress"]
    assert kinds == ["enqueued", "started", "paused", "resumed", "started", "completed"]


def test_cancelling_a_running_job_emits_cancelled(queue: JobQueue, events: EventLog, tmp_path: Path) -> None:
    """A running job cancelled through its token emits 'cancelled'."""
    (tmp_path / "hold-extract").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc="one two", control=str(tmp_path))
    events.wait_for(handle.id, "progress", stage="extract")
    assert handle.cancel() == "cancelling"
    events.wait_for(handle.id, "cancelled")


def test_job_of_a_lost_worker_emits_rescued(queue: JobQueue, events: EventLog) -> None:
    """A running job whose worker is gone is rescued back to pending, with a 'rescued' event."""
    handle = Flaky.perform_later(times=0)
    [claimed] = queue.store.claim(
        worker="ghost-worker", limit=1, names=["tests.flaky"], queues=None, now=queue.clock.now()
    )
    assert claimed.id == handle.id and handle.status() == "running"
    queue.worker.rescue_once()
    rescued = events.wait_for(handle.id, "rescued")
    assert rescued["status"] == "pending" and handle.status() == "pending"


def test_a_slow_subscriber_does_not_slow_the_worker_or_other_subscribers(queue: JobQueue, events: EventLog) -> None:
    """With a listener taking 0.2 s per event, 30 jobs still finish at once and other listeners keep up."""
    slow_seen: list[str] = []

    def slow(event: dict[str, Any]) -> None:
        time.sleep(0.2)
        slow_seen.append(event["type"])

    unsubscribe = queue.subscribe(slow)
    try:
        queue.start()
        started = time.monotonic()
        handles = AddOne.perform_all_later([{"n": i} for i in range(30)])
        assert [h.result(timeout=10) for h in handles] == [i + 1 for i in range(30)]
        events.wait_for(handles[-1].id, "completed", timeout=5)
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, f"30 jobs took {elapsed:.1f}s with a slow subscriber"
        assert len(slow_seen) < 30, "the slow listener cannot have kept up; it was not really slow"
    finally:
        unsubscribe()


def test_a_failing_subscriber_is_logged_and_stays_subscribed(
    queue: JobQueue, events: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is logged, keeps receiving events, and jobs keep completing."""
    calls: list[str] = []

    def broken(event: dict[str, Any]) -> None:
        calls.append(event["type"])
        raise RuntimeError("listener bug")

    caplog.set_level(logging.ERROR, logger="jobkit.events")
    unsubscribe = queue.subscribe(broken)
    try:
        handles = AddOne.perform_all_later([{"n": i} for i in range(3)])
        queue.drain()
        assert [h.result(timeout=5) for h in handles] == [1, 2, 3]
        queue.events.flush()
        assert calls.count("completed") == 3
        assert len(events.of(handles[-1].id, "completed")) == 1
        assert "raised; it stays subscribed" in caplog.text
    finally:
        unsubscribe()


def test_unsubscribe_stops_delivery(queue: JobQueue, events: EventLog) -> None:
    """After unsubscribe() a listener receives nothing more."""
    seen: list[dict[str, Any]] = []
    unsubscribe = queue.subscribe(seen.append)
    first = AddOne.perform_later(n=1)
    queue.events.flush()
    unsubscribe()
    second = AddOne.perform_later(n=2)
    events.wait_for(second.id, "enqueued")
    assert [e["job_id"] for e in seen] == [first.id]


def test_a_listener_far_behind_loses_the_newest_events_not_the_worker() -> None:
    """Past its backlog a stuck listener's events are dropped and counted; emit never blocks."""
    bus = EventBus(backlog=5)
    release = threading.Event()
    holding = threading.Event()
    seen: list[int] = []

    def stuck(event: dict[str, Any]) -> None:
        holding.set()
        release.wait(5)
        seen.append(event["n"])

    bus.subscribe(stuck)
    bus.emit({"type": "progress", "n": 0})
    # The listener holds event 0 before the rest arrive, so exactly five more fit in its backlog.
    assert holding.wait(5)
    started = time.monotonic()
    for n in range(1, 50):
        bus.emit({"type": "progress", "n": n})
    assert time.monotonic() - started < 0.5
    assert bus.dropped == 44
    release.set()
    bus.flush()
    assert seen == list(range(6))

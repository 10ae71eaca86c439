"""Event tracking for handle streams: snapshots become events, no stage repeated or skipped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobkit._handle import JobEvent, JobInfo, _EventTracker

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def snapshot(status: str = "running", progress: dict[str, Any] | None = None, **fields: Any) -> JobInfo:
    values: dict[str, Any] = {
        "id": 9,
        "name": "tests.track",
        "queue": "default",
        "priority": 0,
        "status": status,
        "args": {},
        "run_at": WHEN,
        "created_at": WHEN,
        "attempt": 1,
        "max_retries": 3,
        "started_at": WHEN,
        "finished_at": None,
        "result": None,
        "errors": [],
        "progress": progress,
        "checkpoint": None,
        "cancel_requested": None,
        "crashes": 0,
        "worker_id": "w-1",
    }
    values.update(fields)
    return JobInfo(**values)


def report(
    seq: int, stages: list[str], *, lease: int = 1, percent: float = 0, count: int | None = None
) -> dict[str, Any]:
    """A stored progress value as the reporter writes it."""
    return {
        "percent": percent,
        "stage": stages[-1] if stages else None,
        "message": None,
        "data": {},
        "seq": seq,
        "lease": lease,
        "stages": stages,
        "stage_count": len(stages) if count is None else count,
    }


def feed(tracker: _EventTracker, info: JobInfo) -> list[tuple[str, Any]]:
    """(type, stage or percent) of the events one snapshot produces."""
    return [(e.type, e.stage if e.type == "progress" else None) for e in tracker.feed(info)]


def test_a_running_job_without_progress_says_nothing() -> None:
    """No progress yet, not ended: no event."""
    assert feed(_EventTracker(9), snapshot()) == []


def test_new_progress_is_one_event_and_the_same_progress_none() -> None:
    """A report is told once; reading the same (lease, seq) again tells nothing."""
    tracker = _EventTracker(9)
    info = snapshot(progress=report(1, ["download"], percent=10))
    [event] = tracker.feed(info)
    assert event == JobEvent(type="progress", job_id=9, percent=10, stage="download", data={}, name="tests.track")
    assert feed(tracker, info) == []


def test_stages_missed_between_two_snapshots_are_replayed_in_order() -> None:
    """Stages that came and went between two reads are told, each once, before the current report."""
    tracker = _EventTracker(9)
    feed(tracker, snapshot(progress=report(1, ["a"])))
    assert feed(tracker, snapshot(progress=report(7, ["a", "b", "c", "d"]))) == [
        ("progress", "b"),
        ("progress", "c"),
        ("progress", "d"),
    ]


def test_only_the_stages_still_in_the_log_are_replayed() -> None:
    """When the stored log kept only the last stages, the tracker replays those and skips nothing it has."""
    tracker = _EventTracker(9)
    feed(tracker, snapshot(progress=report(1, ["s0"])))
    # 6 stages in all, only the last 3 kept: s1 and s2 are gone from the log.
    assert feed(tracker, snapshot(progress=report(9, ["s3", "s4", "s5"], count=6))) == [
        ("progress", "s3"),
        ("progress", "s4"),
        ("progress", "s5"),
    ]


def test_a_new_attempt_starts_its_stages_afresh() -> None:
    """A new lease (the next attempt) replays its own stages from the first."""
    tracker = _EventTracker(9)
    feed(tracker, snapshot(progress=report(3, ["a", "b"])))
    assert feed(tracker, snapshot(progress=report(2, ["a", "b"], lease=2))) == [("progress", "a"), ("progress", "b")]


def test_pause_is_told_once_per_pause() -> None:
    """A paused job is told once; paused again after running, once more."""
    tracker = _EventTracker(9)
    assert feed(tracker, snapshot("paused")) == [("paused", None)]
    assert feed(tracker, snapshot("paused")) == []
    assert feed(tracker, snapshot("pending")) == []
    assert feed(tracker, snapshot("paused")) == [("paused", None)]


def test_the_end_carries_the_result_or_the_last_error() -> None:
    """completed carries the result, failed the last error entry, cancelled nothing more."""
    [done] = _EventTracker(9).feed(snapshot("completed", result={"ok": True}))
    assert (done.type, done.result) == ("completed", {"ok": True})
    errors = [{"type": "A", "message": "1"}, {"type": "B", "message": "2"}]
    [failed] = _EventTracker(9).feed(snapshot("failed", errors=errors))
    assert (failed.type, failed.error) == ("failed", errors[-1])
    [cancelled] = _EventTracker(9).feed(snapshot("cancelled"))
    assert cancelled.type == "cancelled"


def test_the_last_progress_comes_before_the_end() -> None:
    """A job that reported and ended between two reads tells its progress, then its end."""
    tracker = _EventTracker(9)
    info = snapshot("completed", progress=report(4, ["a"], percent=100), result=1)
    assert [e.type for e in tracker.feed(info)] == ["progress", "completed"]


def test_damaged_progress_never_breaks_a_stream() -> None:
    """A stage log that is not a list, a count that is not a number, data that is not an object: still one event."""
    tracker = _EventTracker(9)
    damaged = {"seq": 1, "lease": 1, "stages": "oops", "stage_count": "many", "data": [1], "stage": "x"}
    [event] = tracker.feed(snapshot(progress=damaged))
    assert (event.type, event.stage, event.data) == ("progress", "x", {})

"""Progress coalescing: a job reporting in a tight loop costs a few writes a second, and nothing is lost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobkit import CancelToken, FakeClock
from jobkit._runtime.reporter import PROGRESS_MIN_INTERVAL, JobReporter
from jobkit._store import ClaimedJob
from jobkit._vocabulary import Event


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Writes:
    """Records every progress and checkpoint write; ``took`` decides whether the lease held."""

    def __init__(self) -> None:
        self.progress_written: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.took = True
        self.fail: Exception | None = None

    def progress(self, job: ClaimedJob, payload: str, now: float) -> bool:
        if self.fail is not None:
            raise self.fail
        self.progress_written.append(json.loads(payload))
        return self.took

    def checkpoint(self, job: ClaimedJob, payload: str, now: float) -> bool:
        self.checkpoints.append(json.loads(payload))
        return self.took


class Flushes:
    """Records when the reporter asked to be flushed."""

    def __init__(self) -> None:
        self.due: list[float] = []

    def schedule(self, due: float, reporter: JobReporter) -> None:
        self.due.append(due)


JOB = ClaimedJob(7, "tests.progress", "default", 0, "{}", 2, 3, None, None, 0, 5, 0.0, 0.0, worker_id="w-1")


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def writes() -> Writes:
    return Writes()


@pytest.fixture
def flushes() -> Flushes:
    return Flushes()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def reporter(ticks: Ticks, writes: Writes, flushes: Flushes, events: list[Event]) -> JobReporter:
    return JobReporter(JOB, CancelToken(), FakeClock(), events.append, writes, flushes, monotonic=ticks)


def percents(writes: Writes) -> list[float]:
    return [p["percent"] for p in writes.progress_written]


def test_the_first_report_is_written_at_once(reporter: JobReporter, writes: Writes, events: list[Event]) -> None:
    """Nothing written yet: the first report goes straight to the database and to listeners."""
    reporter.progress(10, None, "starting", {})
    assert percents(writes) == [10]
    assert [(e["type"], e["job_id"], e["percent"], e["name"]) for e in events] == [
        ("progress", 7, 10, "tests.progress")
    ]


def test_reports_within_the_interval_are_coalesced(reporter: JobReporter, writes: Writes, flushes: Flushes) -> None:
    """Reports inside PROGRESS_MIN_INTERVAL wait; one flush is scheduled for the end of the interval."""
    for percent in (10, 20, 30, 40):
        reporter.progress(percent, None, None, {})
    assert percents(writes) == [10]
    assert flushes.due == [100.0 + PROGRESS_MIN_INTERVAL]


def test_the_flush_writes_only_the_newest_report(
    reporter: JobReporter, writes: Writes, ticks: Ticks, events: list[Event]
) -> None:
    """When the interval has passed, the flusher writes the newest waiting report, once."""
    for percent in (10, 20, 30):
        reporter.progress(percent, None, None, {})
    ticks.now += PROGRESS_MIN_INTERVAL
    reporter.flush()
    reporter.flush()
    assert percents(writes) == [10, 30]
    assert [e["percent"] for e in events] == [10, 30]


def test_an_early_flush_waits_for_the_rest_of_the_interval(
    reporter: JobReporter, writes: Writes, flushes: Flushes, ticks: Ticks
) -> None:
    """A flush that runs before the interval has passed writes nothing and schedules itself again."""
    reporter.progress(10, None, None, {})
    reporter.progress(20, None, None, {})
    ticks.now += PROGRESS_MIN_INTERVAL / 2
    reporter.flush()
    assert percents(writes) == [10]
    assert flushes.due == [100.0 + PROGRESS_MIN_INTERVAL, 100.0 + PROGRESS_MIN_INTERVAL]


def test_a_stage_change_and_completion_go_through_at_once(reporter: JobReporter, writes: Writes) -> None:
    """A new stage and 100% are written at once, whatever the interval."""
    reporter.progress(10, "download", None, {})
    reporter.progress(20, "download", None, {})
    reporter.progress(30, "parse", None, {})
    reporter.progress(100, None, None, {})
    assert percents(writes) == [10, 30, 100]


def test_the_stored_report_carries_seq_lease_and_the_stage_log(reporter: JobReporter, writes: Writes) -> None:
    """Each write names its sequence number, lease and attempt, and the stages this attempt went through."""
    reporter.progress(10, "download", None, {"bytes": 1})
    reporter.progress(50, "parse", "half", {})
    reporter.progress(100, None, None, {})
    last = writes.progress_written[-1]
    assert (last["seq"], last["lease"], last["attempt"]) == (3, 5, 2)
    assert (last["stage"], last["stages"], last["stage_count"]) == ("parse", ["download", "parse"], 2)


def test_the_unwritten_report_is_handed_to_the_completer(reporter: JobReporter, writes: Writes) -> None:
    """At the job's end the newest unwritten report is taken (and written with the outcome); later ones are dropped."""
    reporter.progress(10, None, None, {})
    reporter.progress(60, None, None, {})
    pending = reporter.take_pending()
    assert pending is not None and json.loads(pending)["percent"] == 60
    reporter.progress(70, None, None, {})
    reporter.flush()
    assert percents(writes) == [10]
    assert reporter.take_pending() is None


def test_nothing_is_handed_over_when_everything_was_written(reporter: JobReporter) -> None:
    """A report already written is not written a second time by the completer."""
    reporter.progress(100, None, None, {})
    assert reporter.take_pending() is None


def test_a_refused_write_means_the_lease_was_lost(reporter: JobReporter, writes: Writes) -> None:
    """A progress write the database refuses fires the job's token with lease_lost."""
    writes.took = False
    reporter.progress(10, None, None, {})
    assert (reporter.token.cancelled, reporter.token.reason) == (True, "lease_lost")


def test_a_failed_write_is_kept_for_the_flusher(reporter: JobReporter, writes: Writes, flushes: Flushes) -> None:
    """A write that fails (database away) keeps the report waiting and schedules a flush."""
    writes.fail = ConnectionError("away")
    reporter.progress(10, None, None, {})
    assert writes.progress_written == [] and len(flushes.due) == 1
    writes.fail = None
    pending = reporter.take_pending()
    assert pending is not None and json.loads(pending)["percent"] == 10


def test_a_checkpoint_is_written_at_once(reporter: JobReporter, writes: Writes) -> None:
    """Checkpoints are never coalesced; a refused one also means the lease was lost."""
    reporter.checkpoint("parsed", {"rows": 3})
    assert [(c["stage"], c["data"]) for c in writes.checkpoints] == [("parsed", {"rows": 3})]
    writes.took = False
    reporter.checkpoint("saved", None)
    assert reporter.token.reason == "lease_lost"

"""queue.execute: a job run at once on this process's threads, never stored, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from jobkit import BaseJob, JobCancelled, JobContext, JobFailed, JobQueue, job
from jobkit._registry import unregister
from tests.jobs import AddOne, NumberArgs

RELEASE = threading.Event()


@job(name="tests.direct.stages", schema=NumberArgs, max_retries=3)
class Stages(BaseJob[NumberArgs]):
    """Reports three stages, then returns n squared."""

    def perform(self, args: NumberArgs) -> dict[str, int]:
        for percent, stage in ((10, "fetch"), (60, "compute"), (100, "store")):
            self.progress(percent, stage=stage, message=f"n={args.n}")
        return {"square": args.n * args.n}


@job(name="tests.direct.blocked", max_retries=0)
class Blocked(BaseJob[dict[str, Any]]):
    """Holds its slot until RELEASE is set (or its token fires)."""

    def perform(self, args: dict[str, Any]) -> str:
        while not RELEASE.wait(0.02):
            self.cancel_token.raise_if_cancelled()
        return "released"


@job(name="tests.direct.fails", max_retries=5)
class Fails(BaseJob[dict[str, Any]]):
    """Always raises: a direct run reports it once, with no retry."""

    def perform(self, args: dict[str, Any]) -> None:
        raise ValueError(f"bad input on attempt {self.attempt}")


@pytest.fixture(autouse=True)
def released() -> Iterator[None]:
    """Every test starts with Blocked holding, and ends with it let go."""
    RELEASE.clear()
    yield
    RELEASE.set()


def test_execute_returns_the_result_and_stores_nothing(queue: JobQueue) -> None:
    """A direct run returns its result through the handle and writes no row."""
    handle = queue.execute(Stages, {"n": 7})
    assert handle.result(timeout=10) == {"square": 49}
    assert handle.status() == "completed"
    assert handle.id < 0
    assert queue.jobs() == [] and queue.stats()["by_status"] == {}


def test_execute_streams_every_progress_event_then_the_end(queue: JobQueue) -> None:
    """stream() yields each stage in order, then the completed event with the result."""
    events = list(queue.execute("tests.direct.stages", {"n": 3}).stream(timeout=10))
    assert [(e.type, e.percent, e.stage) for e in events] == [
        ("progress", 10.0, "fetch"),
        ("progress", 60.0, "compute"),
        ("progress", 100.0, "store"),
        ("completed", None, None),
    ]
    assert events[-1].result == {"square": 9}


def test_execute_runs_beside_queued_jobs_that_fill_the_worker(queue: JobQueue) -> None:
    """With every worker slot held by queued jobs, a direct run still runs at once."""
    started: list[int] = []
    all_started = threading.Event()

    def on_event(event: Any) -> None:
        if event["type"] == "started":
            started.append(event["job_id"])
            if len(started) == queue.settings.concurrency:
                all_started.set()

    queue.subscribe(on_event)
    held = [Blocked.perform_later() for _ in range(queue.settings.concurrency)]
    queue.start()
    try:
        assert all_started.wait(10), started
        assert queue.execute(AddOne, {"n": 1}).result(timeout=10) == 2
        assert [h.status() for h in held] == ["running"] * len(held)
        RELEASE.set()
        assert [h.result(timeout=10) for h in held] == ["released"] * len(held)
    finally:
        queue.stop(grace=5)


def test_cancel_ends_a_direct_run_cancelled(queue: JobQueue) -> None:
    """cancel() fires the run's token; result() raises JobCancelled."""
    handle = queue.execute(Blocked)
    assert handle.cancel() is True
    with pytest.raises(JobCancelled):
        handle.result(timeout=10)
    assert handle.status() == "cancelled"
    assert handle.cancel() is False


def test_a_failing_direct_run_raises_once_without_retries(queue: JobQueue) -> None:
    """A run that raises is failed after its one attempt: result() raises JobFailed with the error."""
    handle = queue.execute(Fails)
    with pytest.raises(JobFailed) as caught:
        handle.result(timeout=10)
    assert [(e["type"], e["message"]) for e in caught.value.errors] == [("ValueError", "bad input on attempt 1")]
    assert queue.jobs() == []


def test_execute_validates_as_enqueue_does(queue: JobQueue) -> None:
    """Arguments that do not fit the schema, or an unknown name, are refused in the caller."""
    with pytest.raises(pydantic.ValidationError):
        queue.execute(Stages, {"n": "seven"})
    with pytest.raises(LookupError, match=r"no job type named 'tests\.direct\.nope'"):
        queue.execute("tests.direct.nope", {})


def test_execute_runs_a_handler_with_its_context(queue: JobQueue) -> None:
    """A plugin handler run directly reports progress through its context."""

    def shout(args: dict[str, Any], context: JobContext) -> str:
        context.progress(50, stage="shouting")
        return str(args["text"]).upper()

    queue.register_handler("tests.direct.shout", shout)
    try:
        events = list(queue.execute("tests.direct.shout", {"text": "hi"}).stream(timeout=10))
    finally:
        unregister("tests.direct.shout")
    assert [(e.type, e.stage) for e in events] == [("progress", "shouting"), ("completed", None)]
    assert events[-1].result == "HI"

"""Enqueue paths, validation and scheduling, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest
import sqlalchemy as sa

from jobkit import EnqueueError, FakeClock, JobQueue
from tests.jobs import AddOne, AsyncDouble, Echo


def test_perform_later_stores_a_pending_job(queue: JobQueue) -> None:
    """perform_later validates, stores and returns a handle on a pending row."""
    handle = AddOne.perform_later(n=1)
    info = handle.refresh()
    assert (info.status, info.name, info.args, info.attempt) == ("pending", "tests.add_one", {"n": 1}, 0)


def test_validation_error_at_enqueue_stores_nothing(queue: JobQueue) -> None:
    """Arguments that do not fit the schema raise pydantic's error and write no row."""
    with pytest.raises(pydantic.ValidationError):
        AddOne.perform_later(n="not a number")
    with pytest.raises(pydantic.ValidationError):
        AddOne.perform_all_later([{"n": 1}, {"n": "bad"}])
    assert queue.stats()["by_status"] == {}


def test_perform_now_runs_inline_and_writes_no_row(queue: JobQueue) -> None:
    """perform_now returns the result in the caller and stores nothing."""
    assert AddOne.perform_now(n=41) == 42
    assert AsyncDouble.perform_now(n=4) == 8
    assert queue.stats()["by_status"] == {}


def test_perform_now_raises_the_jobs_exception(queue: JobQueue) -> None:
    """perform_now lets the job's own exception through."""
    from tests.jobs import Flaky

    with pytest.raises(RuntimeError, match="boom on attempt 1"):
        Flaky.perform_now(times=1)


def test_perform_at_refuses_naive_datetimes(queue: JobQueue) -> None:
    """A naive datetime is ambiguous; it is refused with a clear error."""
    with pytest.raises(EnqueueError, match="naive datetime"):
        AddOne.perform_at(datetime(2030, 1, 1), n=1)


def test_scheduled_job_waits_for_its_time(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """A job enqueued with perform_in is not claimed before its time."""
    AddOne.perform_in(timedelta(minutes=5), n=1)
    assert clocked_queue.run_once() == 0
    clock.advance(timedelta(minutes=5, seconds=1))
    assert clocked_queue.run_once() == 1


def test_perform_at_runs_at_the_given_time(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """perform_at stores the aware run time and the job waits for it."""
    when = datetime.fromtimestamp(clock.now(), tz=UTC) + timedelta(hours=1)
    handle = AddOne.perform_at(when, n=1)
    assert abs(handle.refresh().run_at.timestamp() - when.timestamp()) < 0.001
    clock.advance(timedelta(minutes=59, seconds=59))
    assert clocked_queue.run_once() == 0
    # A datetime keeps microseconds only, so the stored time can sit a hair past clock + 1h.
    clock.advance(timedelta(seconds=1, milliseconds=1))
    assert clocked_queue.run_once() == 1


def test_set_overrides_queue_priority_and_wait(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """set(queue=, priority=, wait=) applies per call."""
    handle = AddOne.set(queue="urgent", priority=-5, wait=timedelta(seconds=30)).perform_later(n=1)
    info = handle.refresh()
    assert (info.queue, info.priority) == ("urgent", -5)
    assert info.run_at.timestamp() == pytest.approx(clock.now() + 30)


def test_priorities_then_run_at_order(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """Lower priority runs first; equal priorities run in run_at order."""
    late = AddOne.set(priority=0).perform_later(n=1)
    clock.advance(1)
    later = AddOne.set(priority=0).perform_later(n=2)
    urgent = AddOne.set(priority=-1).perform_later(n=3)
    clock.advance(1)
    order = []
    for _ in range(3):
        clocked_queue.worker.concurrency = 1
        clocked_queue.run_once()
        order.append(next(h.id for h in (urgent, late, later) if h.status() == "completed" and h.id not in order))
    assert order == [urgent.id, late.id, later.id]


def test_perform_all_later_returns_handles_in_order(queue: JobQueue) -> None:
    """Bulk enqueue stores every job and returns their handles in input order."""
    handles = AddOne.perform_all_later([{"n": i} for i in range(300)])
    assert [h.refresh().args["n"] for h in handles[:3]] == [0, 1, 2]
    assert handles[-1].refresh().args == {"n": 299}
    assert queue.stats()["by_status"] == {"pending": 300}


def test_transactional_enqueue_rolled_back_leaves_no_job(queue: JobQueue) -> None:
    """With connection=, a rolled-back transaction leaves no job behind; a committed one does."""
    engine = sa.create_engine(queue.settings.database_url)
    with engine.connect() as conn:
        conn.begin()
        AddOne.perform_later(n=1, connection=conn)
        conn.rollback()
    assert queue.stats()["by_status"] == {}
    with engine.begin() as conn:
        handle = AddOne.perform_later(n=2, connection=conn)
    assert handle.status() == "pending"
    engine.dispose()


def test_schemaless_job_accepts_any_json_object(queue: JobQueue) -> None:
    """A job without a schema takes any JSON-able keyword arguments."""
    handle = Echo.perform_later(a=1, b=[1, 2])
    queue.run_once()
    assert handle.result(timeout=5) == {"a": 1, "b": [1, 2]}


def test_bulk_enqueue_keeps_every_value_exactly(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """A bulk insert (one JSON parameter per chunk) stores awkward text, priorities and run times unchanged."""
    from jobkit._store import postgres, sqlite

    awkward = ['quote " backslash \\ tab \t', "ünïcødé ✓ 日本", "{not: json}", "", "null", "a\nb"]
    rows = [{"text": awkward[i % len(awkward)], "i": i} for i in range(postgres.INSERT_CHUNK + 7)]
    assert postgres.INSERT_CHUNK == sqlite.INSERT_CHUNK  # the rows above span two chunks on both
    when = datetime.fromtimestamp(clock.now() + 1234.567891, UTC)
    handles = Echo.set(priority=-3, wait_until=when).perform_all_later(rows)
    assert [h.id for h in handles] == sorted(h.id for h in handles)
    for handle, row in zip(handles[:12] + handles[-3:], rows[:12] + rows[-3:], strict=True):
        info = handle.refresh()
        assert (info.args, info.priority, info.status) == (row, -3, "pending")
        assert info.run_at == when

"""Unique jobs, on SQLite and PostgreSQL: one live job per key, whoever inserts it and however."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jobkit import FakeClock, JobQueue
from tests.unique_jobs import (
    AnyQueueSync,
    DebounceSync,
    HourlyReport,
    ReplaceSync,
    SyncAccount,
    SyncByAccount,
    race_enqueue,
)


def pending(queue: JobQueue, name: str) -> int:
    return sum(1 for job in queue.jobs(status="pending", name=name))


def test_a_duplicate_returns_the_existing_jobs_handle(queue: JobQueue) -> None:
    """The same arguments give the first job's handle, marked duplicate; other arguments make a new job."""
    first = SyncAccount.perform_later(account_id=1)
    again = SyncAccount.perform_later(account_id=1)
    other = SyncAccount.perform_later(account_id=2)
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.id == first.id and other.id != first.id
    assert pending(queue, "tests.unique.sync") == 2


def test_eight_processes_inserting_at_once_create_one_row(db_url: str) -> None:
    """8 processes enqueue the same unique job at the same moment: one row, 7 duplicate handles naming it."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    processes = [context.Process(target=race_enqueue, args=(db_url, ready, go, results)) for _ in range(8)]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            assert ready.acquire(timeout=60), "a racing process did not start"
        go.set()
        answers = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(30)
    assert all(process.exitcode == 0 for process in processes)
    ids = {job_id for job_id, _ in answers}
    assert len(ids) == 1
    assert sorted(duplicate for _, duplicate in answers) == [False] + [True] * 7
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM jobkit_jobs")).scalar() == 1
    engine.dispose()


def test_a_finished_job_frees_its_key(queue: JobQueue) -> None:
    """Out of its unique states (completed), a job no longer keeps a new one out."""
    first = SyncAccount.perform_later(account_id=1)
    assert queue.run_once() == 1
    assert first.result(timeout=10) == 1
    second = SyncAccount.perform_later(account_id=1)
    assert not second.duplicate and second.id != first.id


def test_a_running_job_keeps_its_key(queue: JobQueue) -> None:
    """A running job is a duplicate's holder too (default states: pending and running)."""
    first = SyncAccount.perform_later(account_id=1)
    [claimed] = queue.store.claim(worker="w", limit=1, names=["tests.unique.sync"], queues=None, now=queue.clock.now())
    assert claimed.id == first.id
    again = SyncAccount.perform_later(account_id=1)
    assert again.duplicate and again.id == first.id


def test_unique_by_looks_at_the_named_arguments_only(queue: JobQueue) -> None:
    """unique_by=("account_id",): a different note is still a duplicate; a different account is not."""
    first = SyncByAccount.perform_later(account_id=1, note="a")
    assert SyncByAccount.perform_later(account_id=1, note="b").id == first.id
    assert not SyncByAccount.perform_later(account_id=2, note="a").duplicate
    assert first.refresh().args == {"account_id": 1, "note": "a"}  # skip: the first stays as it was


def test_replace_updates_the_pending_jobs_args_priority_and_run_at(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """on_conflict="replace": the pending job takes the duplicate's arguments, priority and run time."""
    first = ReplaceSync.perform_later(account_id=1, note="old")
    again = ReplaceSync.set(priority=-3, wait=60).perform_later(account_id=1, note="new")
    assert again.duplicate and again.id == first.id
    info = first.refresh()
    assert (info.args["note"], info.priority) == ("new", -3)
    assert info.run_at.timestamp() == pytest.approx(clock.now() + 60)
    assert clocked_queue.run_once() == 0  # moved to later: not due now
    clock.advance(timedelta(seconds=61))
    assert clocked_queue.run_once() == 1
    assert first.result(timeout=10) == "new"


def test_debounce_moves_the_pending_jobs_run_at(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """on_conflict="debounce": each duplicate pushes the one pending job's run time to its own."""
    first = DebounceSync.perform_in(timedelta(seconds=10), account_id=1)
    clock.advance(timedelta(seconds=8))
    again = DebounceSync.perform_in(timedelta(seconds=10), account_id=1)
    assert again.duplicate and again.id == first.id
    clock.advance(timedelta(seconds=5))  # 13 s after the first call: its own time has passed
    assert clocked_queue.run_once() == 0
    clock.advance(timedelta(seconds=6))
    assert clocked_queue.run_once() == 1
    assert pending(clocked_queue, "tests.unique.debounce") == 0


def test_unique_in_a_rolled_back_transaction_leaves_nothing_behind(queue: JobQueue) -> None:
    """A unique job inserted in a transaction that rolls back holds no key afterwards."""
    engine = sa.create_engine(queue.settings.database_url)
    with engine.connect() as conn:
        conn.begin()
        inside = SyncAccount.perform_later(account_id=5, connection=conn)
        assert SyncAccount.perform_later(account_id=5, connection=conn).id == inside.id  # seen in the transaction
        conn.rollback()
    assert queue.stats()["by_status"] == {}
    after = SyncAccount.perform_later(account_id=5)
    assert not after.duplicate
    with engine.begin() as conn:
        assert SyncAccount.perform_later(account_id=5, connection=conn).id == after.id
    engine.dispose()


def test_unique_for_holds_the_key_for_its_window_only(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """unique_for=1 h with completed among the states: a second run within the hour is a duplicate, not after."""
    first = HourlyReport.perform_later(account_id=1)
    assert clocked_queue.run_once() == 1
    assert first.result(timeout=10) == 1
    clock.advance(timedelta(minutes=59))
    assert HourlyReport.perform_later(account_id=1).id == first.id
    clock.advance(timedelta(minutes=2))
    later = HourlyReport.perform_later(account_id=1)
    assert not later.duplicate and later.id != first.id
    assert HourlyReport.perform_later(account_id=1).id == later.id


def test_bulk_handles_duplicates_within_the_call_and_against_existing_rows(queue: JobQueue) -> None:
    """perform_all_later: handles come back in input order, duplicates naming the job holding the key."""
    existing = SyncAccount.perform_later(account_id=1)
    handles = SyncAccount.perform_all_later(
        [{"account_id": 2}, {"account_id": 1}, {"account_id": 3}, {"account_id": 2}]
    )
    assert [h.duplicate for h in handles] == [False, True, False, True]
    assert handles[1].id == existing.id and handles[3].id == handles[0].id
    assert handles[0].id < handles[2].id
    assert [h.refresh().args["account_id"] for h in handles] == [2, 1, 3, 2]
    assert pending(queue, "tests.unique.sync") == 3


def test_keys_are_per_queue_unless_across_queues(queue: JobQueue) -> None:
    """By default each queue has its own key; unique_across_queues makes one key for every queue."""
    a = SyncAccount.perform_later(account_id=1)
    assert not SyncAccount.set(queue="other").perform_later(account_id=1).duplicate
    assert not a.duplicate
    b = AnyQueueSync.perform_later(account_id=1)
    assert AnyQueueSync.set(queue="other").perform_later(account_id=1).id == b.id

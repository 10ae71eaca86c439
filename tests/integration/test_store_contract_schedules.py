"""The store contract for schedules and fire rows, on SQLite and PostgreSQL (see test_store_contract.py)."""

from __future__ import annotations

import threading

from jobkit._store import NewJob, NewSchedule, PlannedFire, Store

NAME = "tests.contract_probe"


def define(store: Store, key: str = "k", *, cron: str = "@hourly", now: float = 1000.0) -> None:
    """Upsert a schedule ``key`` at ``now``."""
    schedule = NewSchedule(key, NAME, cron, "UTC", '{"a":1}', None, "latest", None, "allow", "runtime")
    store.upsert_schedule(schedule, now=now)


def job(run_at: float) -> NewJob:
    """The job a fire at ``run_at`` makes."""
    return NewJob(NAME, '{"a":1}', "default", 0, run_at, 0)


def fire(store: Store, at: float, *, expected: float | None, key: str = "k") -> list[tuple[float, int | None]] | None:
    """Record one fire at ``at`` with its job; the fires recorded, or None when the compare-and-set lost."""
    fired = store.record_fires(
        key, expected_last_fire=expected, last_fire_at=at, fires=[PlannedFire(at, job(at))], missed=0, now=at
    )
    return None if fired is None else [(f.fire_at, f.job_id) for f in fired]


def test_an_upsert_redefines_and_keeps_state(store: Store) -> None:
    """A second upsert changes the definition and keeps created_at, last fire, last job and pause."""
    define(store)
    fire(store, 1200.0, expected=None)
    store.pause_schedule("k", paused=True, now=1300.0)
    define(store, cron="*/5 * * * *", now=1400.0)
    [record] = store.list_schedules()
    assert (record.cron, record.created_at, record.updated_at) == ("*/5 * * * *", 1000.0, 1400.0)
    assert (record.last_fire_at, record.paused, record.last_job_status) == (1200.0, True, "pending")


def test_a_fire_records_its_job_in_the_same_transaction(store: Store) -> None:
    """record_fires moves last_fire_at, inserts the fire row and the job, and names the job."""
    define(store)
    [(at, job_id)] = fire(store, 1200.0, expected=None) or []
    assert at == 1200.0 and job_id is not None
    record = store.get_schedule("k")
    assert record is not None
    assert (record.last_fire_at, record.last_job_id) == (1200.0, job_id)
    assert store.schedule_fires("k") == [(1200.0, job_id, "enqueued")]
    assert store.status_of(job_id) == "pending"


def test_a_stale_last_fire_loses_the_compare_and_set(store: Store) -> None:
    """A scheduler that read an older last_fire_at fires nothing."""
    define(store)
    assert fire(store, 1200.0, expected=None) is not None
    assert fire(store, 1200.0, expected=None) is None
    assert len(store.list_jobs(name=NAME)) == 1


def test_a_recorded_fire_time_is_never_fired_again(store: Store) -> None:
    """Even past the compare-and-set, a fire time already recorded makes no second job."""
    define(store)
    fire(store, 1200.0, expected=None)
    assert fire(store, 1200.0, expected=1200.0) == []
    assert len(store.list_jobs(name=NAME)) == 1


def test_concurrent_fires_of_one_time_make_one_job(store: Store) -> None:
    """Eight threads recording the same fire at once: one wins, one job."""
    define(store)
    barrier = threading.Barrier(8)
    results: list[object] = []

    def race() -> None:
        barrier.wait()
        results.append(fire(store, 1200.0, expected=None))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for r in results if r) == 1
    assert len(store.list_jobs(name=NAME)) == 1


def test_a_paused_schedule_does_not_fire(store: Store) -> None:
    """record_fires on a paused schedule records nothing; resuming moves last_fire_at to now."""
    define(store)
    store.pause_schedule("k", paused=True, now=1100.0)
    assert fire(store, 1200.0, expected=None) is None
    assert store.pause_schedule("k", paused=False, now=1250.0)
    record = store.get_schedule("k")
    assert record is not None and (record.paused, record.last_fire_at) == (False, 1250.0)


def test_skipped_fires_and_missed_counts(store: Store) -> None:
    """A planned fire without a job is recorded skipped; missed adds up."""
    define(store)
    fired = store.record_fires(
        "k", expected_last_fire=None, last_fire_at=1300.0, fires=[PlannedFire(1300.0, None)], missed=2, now=1300.0
    )
    assert fired is not None and [(f.fire_at, f.job_id) for f in fired] == [(1300.0, None)]
    record = store.get_schedule("k")
    assert record is not None and (record.missed, record.last_job_id) == (2, None)
    assert store.schedule_fires("k") == [(1300.0, None, "skipped")]


def test_fire_now_records_a_manual_fire(store: Store) -> None:
    """fire_now enqueues and records a manual fire without moving last_fire_at."""
    define(store)
    job_id = store.fire_now("k", PlannedFire(1500.0, job(1500.0)), now=1500.0)
    record = store.get_schedule("k")
    assert record is not None and (record.last_fire_at, record.last_job_id) == (None, job_id)
    assert store.schedule_fires("k") == [(1500.0, job_id, "manual")]


def test_prune_fires_deletes_old_rows_only(store: Store) -> None:
    """prune_fires deletes fire rows recorded before the cutoff."""
    define(store)
    fire(store, 1200.0, expected=None)
    fire(store, 5000.0, expected=1200.0)
    assert store.prune_fires(older_than=3000.0) == 1
    assert [at for at, _, _ in store.schedule_fires("k")] == [5000.0]


def test_delete_schedule(store: Store) -> None:
    """delete_schedule removes the row and says whether there was one."""
    define(store)
    assert store.delete_schedule("k")
    assert not store.delete_schedule("k")
    assert store.get_schedule("k") is None and store.list_schedules() == []

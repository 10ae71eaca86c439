"""Jobs written for later wait outside the claim index and are staged into it when they fall due.

The ``staged`` flag is a hint the store keeps for speed (a claim never walks the jobs scheduled
for later); these tests pin what users see through it, on SQLite and PostgreSQL: a scheduled job
starts once due, a requeued job is claimed again by the very next claim, the next-run lookup sees
only jobs still ahead, and a database upgraded from the schema before the flag loses no job.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from jobkit._store import NewJob, Store, Transition, open_store
from jobkit._store.store import MIGRATIONS
from jobkit._vocabulary import JobState, TransitionKind

NAME = "tests.staging_probe"
WORKER = "worker-a"


def claim(store: Store, limit: int = 10) -> list[int]:
    return [j.id for j in store.claim(worker=WORKER, limit=limit, names=[NAME], queues=None, now=store.now())]


def staged(store: Store, job_id: int) -> bool:
    with store.read() as conn:
        return bool(conn.execute(sa.text("SELECT staged FROM jobkit_jobs WHERE id = :id"), {"id": job_id}).scalar())


def test_a_job_written_for_later_is_claimed_once_it_falls_due(store: Store) -> None:
    """A job 0.3 s ahead is not claimable, sits outside the claim index, and the first claim after its time takes it."""
    now = store.now()
    [later] = store.enqueue([NewJob(NAME, "{}", "default", 0, now + 0.3, 0)], now=now)
    [due] = store.enqueue([NewJob(NAME, "{}", "default", 0, now, 0)], now=now)
    assert staged(store, due) and not staged(store, later)
    assert claim(store) == [due]
    assert claim(store) == []
    time.sleep(0.4)
    assert claim(store) == [later]


def test_a_requeued_job_is_claimed_again_by_the_next_claim(store: Store) -> None:
    """A release (delay 0) puts the job back for later; the next claim stages and takes it at once."""
    now = store.now()
    [job_id] = store.enqueue([NewJob(NAME, "{}", "default", 0, now, 3)], now=now)
    [job] = store.claim(worker=WORKER, limit=1, names=[NAME], queues=None, now=now)
    release = Transition(TransitionKind.RELEASE, job_id, WORKER, job.lease, {"delay": 0.0})
    assert store.apply_detailed([release], now=store.now()) == [JobState.PENDING]
    assert not staged(store, job_id)
    assert claim(store) == [job_id]


def test_a_wave_larger_than_one_stage_batch_is_claimed_in_full(store: Store) -> None:
    """2,500 jobs falling due together (more than the stager moves per claim) are all claimed, none twice."""
    now = store.now()
    ids = store.enqueue([NewJob(NAME, "{}", "default", 0, now + 0.2, 0) for _ in range(2500)], now=now)
    time.sleep(0.3)
    seen: list[int] = []
    while batch := claim(store, 400):
        seen.extend(batch)
    assert sorted(seen) == ids


def test_the_next_run_is_the_earliest_job_still_ahead(store: Store) -> None:
    """Due jobs do not count; the earliest job ahead does, and once it is claimed the next one ahead."""
    now = store.now()
    store.enqueue([NewJob(NAME, "{}", "default", 0, now, 0)], now=now)
    soon, later = now + 0.3, now + 3600
    store.enqueue([NewJob(NAME, "{}", "default", 0, at, 0) for at in (later, soon)], now=now)
    found = store.next_run_at(names=[NAME], queues=None, now=store.now())
    assert found == pytest.approx(soon)
    time.sleep(0.4)
    assert len(claim(store)) == 2
    assert store.next_run_at(names=[NAME], queues=None, now=store.now()) == pytest.approx(later)


def test_an_upgrade_from_the_schema_before_staging_keeps_every_job(db_url: str) -> None:
    """Rows written by the previous schema (0003): the due one is claimable after the upgrade, the later one waits."""
    store = open_store(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    now = time.time()
    with store.engine.begin() as conn:
        insert = sa.text(
            "INSERT INTO jobkit_jobs (name, queue, priority, status, args, run_at, created_at, max_retries) "
            "VALUES (:name, 'default', 0, 'pending', '{}', :run_at, :now, 0)"
        )
        conn.execute(
            insert, [{"name": NAME, "run_at": now - 5, "now": now}, {"name": NAME, "run_at": now + 0.5, "now": now}]
        )
    store.close()
    upgraded = open_store(db_url)  # auto-migrates to head
    try:
        [due] = claim(upgraded)
        assert upgraded.next_run_at(names=[NAME], queues=None, now=upgraded.now()) == pytest.approx(now + 0.5)
        time.sleep(0.6)
        [later] = claim(upgraded)
        assert later == due + 1
    finally:
        upgraded.close()

"""Several concurrency keys per job and ordered keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from jobkit import BaseJob, EnqueueError, FakeClock, JobDefinitionError, JobQueue, job
from tests.acceptance.test_cli_worker import env_for
from tests.integration.test_concurrency_keys import stop
from tests.rate_jobs import AccountInRegion, OrderedPerAccount, RegionArgs, ran_in_order
from tests.unique_jobs import PerAccount

ROOT = Path(__file__).resolve().parents[2]
GATED = ["tests.keys.multi", "tests.keys.ordered", "tests.keys.per_account"]


def start_workers(db_url: str, queue: JobQueue, *, count: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    """``count`` real worker processes running tests.rate_jobs, returned once all of them have registered.

    Waiting lets them compete from the first job on, rather than the first one up taking everything.
    """
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "jobkit", "worker", "--app", "tests.rate_jobs", "--concurrency", str(concurrency)],
            env=env_for(db_url),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    deadline = time.monotonic() + 30
    while sum(w.alive for w in queue.workers()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return workers


def claim_ids(queue: JobQueue, limit: int = 10) -> list[int]:
    jobs = queue.store.claim(
        worker="w", limit=limit, names=GATED, queues=None, now=queue.clock.now(), keyed=GATED, limited=GATED
    )
    return [job.id for job in jobs]


def test_a_job_starts_only_while_every_key_has_room(clocked_queue: JobQueue) -> None:
    """Keys (account, region) with limits (1, 2): one claim takes one per account and two per region."""
    a1 = AccountInRegion.perform_later(account_id=1)
    a1_again = AccountInRegion.perform_later(account_id=1)
    a2 = AccountInRegion.perform_later(account_id=2)
    a3 = AccountInRegion.perform_later(account_id=3)
    us = AccountInRegion.perform_later(account_id=4, region="us")
    assert sorted(claim_ids(clocked_queue)) == sorted([a1.id, a2.id, us.id])
    assert claim_ids(clocked_queue) == []  # region:eu full (2/2), account:1 full
    assert a3.why() is not None and a3.why().startswith(
        f"concurrency key region:eu full (2/2, held by jobs {a1.id} and {a2.id})"
    )
    assert a1_again.why().startswith(f"concurrency key account:1 full (1/1, held by job {a1.id})")


def test_a_second_key_counts_against_a_single_key_type(clocked_queue: JobQueue) -> None:
    """A job holding account:1 as one of several keys keeps a plain keyed job of account:1 waiting."""
    multi = AccountInRegion.perform_later(account_id=1)
    assert claim_ids(clocked_queue) == [multi.id]
    single = PerAccount.perform_later(account_id=1)
    assert claim_ids(clocked_queue) == []
    assert single.why().startswith(f"concurrency key account:1 full (1/1, held by job {multi.id})")


def test_several_keys_must_match_the_limits(clocked_queue: JobQueue) -> None:
    """A key function returning the wrong number of keys, or a key twice, refuses the enqueue."""

    @job(name="tests.keys.bad_multi", schema=RegionArgs, concurrency_key=lambda a: ("x", "x"), concurrency_limit=(1, 1))
    class Twice(BaseJob[RegionArgs]):
        def perform(self, args: RegionArgs) -> None: ...

    @job(name="tests.keys.short_multi", schema=RegionArgs, concurrency_key=lambda a: "x", concurrency_limit=(1, 1))
    class Short(BaseJob[RegionArgs]):
        def perform(self, args: RegionArgs) -> None: ...

    with pytest.raises(EnqueueError, match=r"tests\.keys\.bad_multi: concurrency_key returned the same key twice"):
        Twice.perform_later()
    with pytest.raises(EnqueueError, match=r"tests\.keys\.short_multi: concurrency_key must return 2 keys"):
        Short.perform_later()


def test_ordered_keys_run_in_enqueue_order_whatever_the_priority(clocked_queue: JobQueue) -> None:
    """ordered=True: one at a time per key, in enqueue order (priority does not overtake); keys run side by side."""
    ran_in_order.clear()
    handles = [OrderedPerAccount.set(priority=p).perform_later(account_id=1, n=i) for i, p in enumerate((5, 0, 3))]
    other = OrderedPerAccount.perform_later(account_id=2, n=9)
    assert sorted(claim_ids(clocked_queue)) == sorted([handles[0].id, other.id])
    assert claim_ids(clocked_queue) == []
    clocked_queue.store.register_worker("w-why", host="h", pid=1, queues=None, concurrency=1)
    assert handles[1].why() == f"ordered key account:1: waits for job {handles[0].id}, enqueued before it, to finish"


def test_an_ordered_key_waits_for_its_earlier_jobs_even_scheduled_ones(
    clocked_queue: JobQueue, clock: FakeClock
) -> None:
    """A later job never overtakes an earlier unfinished one, even one scheduled for later."""
    ran_in_order.clear()
    first = OrderedPerAccount.perform_in(timedelta(minutes=5), account_id=1, n=1)
    second = OrderedPerAccount.perform_later(account_id=1, n=2)
    clocked_queue.drain()
    assert second.status() == "pending" and first.status() == "pending"
    clock.advance(timedelta(minutes=5, seconds=1))
    clocked_queue.drain()
    assert ran_in_order == [1, 2]


def test_ordered_keys_run_to_the_end_in_order(clocked_queue: JobQueue) -> None:
    """Ten jobs of one ordered key with mixed priorities run in enqueue order."""
    ran_in_order.clear()
    for i in range(10):
        OrderedPerAccount.set(priority=(i * 7) % 5).perform_later(account_id=3, n=i)
    clocked_queue.drain()
    assert ran_in_order == list(range(10))


def test_invalid_key_options_are_refused_at_declaration() -> None:
    """ordered needs one key with limit 1; limits must be positive ints, one per key."""
    cases = [
        ({"concurrency_key": lambda a: "k", "ordered": True, "concurrency_limit": 2}, r"ordered runs one job per key"),
        (
            {"concurrency_key": lambda a: ("a", "b"), "concurrency_limit": (1, 2), "ordered": True},
            r"ordered applies to jobs with one",
        ),
        ({"ordered": True}, r"ordered applies to jobs with a concurrency_key only"),
        (
            {"concurrency_key": lambda a: ("a", "b"), "concurrency_limit": (1, 0)},
            r"concurrency_limit must be between 1",
        ),
        ({"concurrency_key": lambda a: "a", "concurrency_limit": ()}, r"concurrency_limit must give 1 to 8 limits"),
    ]
    for options, message in cases:
        with pytest.raises(JobDefinitionError, match=r"bad\.keys: " + message):

            @job(name="bad.keys", schema=RegionArgs, **options)
            class Bad(BaseJob[RegionArgs]):
                def perform(self, args: RegionArgs) -> None: ...


def test_an_ordered_head_behind_many_later_jobs_still_starts(clocked_queue: JobQueue) -> None:
    """The head of an ordered key at a low priority, behind 150 later jobs of the key at a higher one, is claimed."""
    head = OrderedPerAccount.set(priority=5).perform_later(account_id=7, n=0)
    OrderedPerAccount.set(priority=0).perform_all_later([{"account_id": 7, "n": i} for i in range(1, 151)])
    assert claim_ids(clocked_queue, limit=1) == [head.id]


def test_ordered_keys_hold_across_three_worker_processes(db_url: str, queue: JobQueue, tmp_path: Path) -> None:
    """3 worker processes, 3 ordered keys of 10 jobs: per key, each job starts after the previous one ended."""
    ledger = str(tmp_path / "ledger.log")
    workers = start_workers(db_url, queue, count=3, concurrency=1)  # three keys ready at once need two or more
    handles = [
        OrderedPerAccount.set(priority=(n * 3) % 4).perform_later(account_id=key, n=n, ledger=ledger)
        for n in range(10)
        for key in range(3)
    ]
    try:
        for handle in handles:
            handle.result(timeout=60)
    finally:
        stop(workers)
    with open(ledger, encoding="utf-8") as file:
        lines = [(kind, int(key), int(n), float(at), int(pid)) for kind, key, n, at, pid in map(str.split, file)]
    for key in range(3):
        events = sorted((at, kind, n) for kind, k, n, at, _ in lines if k == key)
        # start 0, end 0, start 1, end 1, ...: never two at once, always in enqueue order.
        assert [(kind, n) for _, kind, n in events] == [(kind, n) for n in range(10) for kind in ("start", "end")]
    assert len({pid for *_, pid in lines}) > 1

"""Concurrency keys, on SQLite and PostgreSQL: at most the limit of jobs holding a key run at once, anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobkit import EnqueueError, FakeClock, JobQueue
from tests.acceptance.test_cli_worker import env_for
from tests.jobs import AddOne
from tests.unique_jobs import BadKey, Pair, PerAccount, UniqueKeyed, ledger_lines, peak_per_key

ROOT = Path(__file__).resolve().parents[2]


def claim_ids(queue: JobQueue, limit: int = 10) -> list[int]:
    names = ["tests.keys.per_account", "tests.keys.pair", "tests.add_one"]
    keyed = ["tests.keys.per_account", "tests.keys.pair"]
    jobs = queue.store.claim(worker="w", limit=limit, names=names, queues=None, now=queue.clock.now(), keyed=keyed)
    return [job.id for job in jobs]


def test_one_claim_takes_no_more_of_a_key_than_its_limit(clocked_queue: JobQueue) -> None:
    """Limit 1 per account: one claim of 10 takes the best job of each account, and plain jobs beside them."""
    a = [PerAccount.set(priority=p).perform_later(account_id=1) for p in (5, 0, 3)]
    b = [PerAccount.perform_later(account_id=2) for _ in range(2)]
    plain = AddOne.perform_later(n=1)
    assert sorted(claim_ids(clocked_queue)) == sorted([a[1].id, b[0].id, plain.id])
    assert claim_ids(clocked_queue) == []  # both keys full
    pairs = [Pair.perform_later(account_id=i) for i in range(3)]
    assert claim_ids(clocked_queue) == [pairs[0].id, pairs[1].id]


def test_a_finished_holder_frees_its_key_for_the_next_in_priority_order(clocked_queue: JobQueue) -> None:
    """The next job of a key starts once its holder ends, highest priority first, without spending attempts."""
    a = [PerAccount.set(priority=p).perform_later(account_id=1) for p in (5, 0, 3)]
    assert clocked_queue.run_once() == 1
    assert a[1].status() == "completed"
    assert (a[0].refresh().attempt, a[2].refresh().attempt) == (0, 0)
    assert clocked_queue.run_once() == 1
    assert a[2].status() == "completed" and a[0].status() == "pending"


def test_a_plain_claim_never_takes_a_keyed_job(clocked_queue: JobQueue) -> None:
    """A claim that is not told which types are keyed leaves their jobs alone."""
    PerAccount.perform_later(account_id=1)
    plain = AddOne.perform_later(n=1)
    jobs = clocked_queue.store.claim(
        worker="w",
        limit=10,
        names=["tests.keys.per_account", "tests.add_one"],
        queues=None,
        now=clocked_queue.clock.now(),
    )
    assert [job.id for job in jobs] == [plain.id]


def test_why_names_the_full_key_and_its_holder(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """A job waiting for its key says which key, how full, and which job holds it."""
    clocked_queue.store.register_worker("w-why", host="h", pid=1, queues=None, concurrency=1)
    first = PerAccount.perform_later(account_id=42)
    second = PerAccount.perform_later(account_id=42)
    [held] = claim_ids(clocked_queue)
    assert held == first.id
    assert second.why() == f"concurrency key account:42 full (1/1, held by job {first.id})"


def test_a_key_function_that_fails_refuses_the_enqueue(queue: JobQueue) -> None:
    """A key function that raises refuses the enqueue, naming the job; nothing is stored."""
    with pytest.raises(
        EnqueueError, match=r"tests\.keys\.bad: concurrency_key raised LookupError: no key for account 1"
    ):
        BadKey.perform_later(account_id=1)
    assert queue.stats()["by_status"] == {}


def start_workers(db_url: str, count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` real worker processes on ``db_url`` running tests.unique_jobs, 4 slots each."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "jobkit", "worker", "--app", "tests.unique_jobs", "--concurrency", "4"],
            env=env_for(db_url),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(30)


def test_limit_one_holds_across_three_worker_processes(db_url: str, queue: JobQueue, tmp_path: Path) -> None:
    """3 worker processes, 4 accounts, limit 1: the ledger the jobs write never shows two of a key at once."""
    ledger = str(tmp_path / "ledger.log")
    handles = [PerAccount.perform_later(account_id=i % 4, seconds=0.05, ledger=ledger) for i in range(60)]
    workers = start_workers(db_url, 3)
    try:
        assert sorted(h.result(timeout=60) for h in handles) == sorted(i % 4 for i in range(60))
    finally:
        stop(workers)
    assert peak_per_key(ledger) == {f"account:{i}": 1 for i in range(4)}
    assert len({pid for *_, pid in ledger_lines(ledger)}) > 1  # the workers shared the keys


@pytest.mark.slow
def test_limit_one_holds_while_a_holder_is_sigkilled(db_url: str, queue: JobQueue, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-job keeps its key until it is rescued; then the job runs elsewhere, never beside another."""
    ledger = str(tmp_path / "ledger.log")
    handles = [PerAccount.perform_later(account_id=i % 3, seconds=0.3, ledger=ledger) for i in range(24)]
    workers = start_workers(db_url, 3)
    killed: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            if os.path.exists(ledger):
                lines = ledger_lines(ledger)
                ended = {(job, pid) for kind, _, _, job, pid in lines if kind == "end"}
                running = [pid for kind, _, _, job, pid in lines if kind == "start" and (job, pid) not in ended]
                victim = next((w for w in workers if w.pid in running), None)
                if victim is not None:
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(10)
                    killed[victim.pid] = time.time()
            time.sleep(0.02)
        assert killed, "no worker was seen running a job"
        assert sorted(h.result(timeout=90) for h in handles) == sorted(i % 3 for i in range(24))
    finally:
        stop(workers)
    assert peak_per_key(ledger, killed) == {f"account:{i}": 1 for i in range(3)}


def test_a_unique_job_with_a_key_gets_its_key_and_stays_unique(clocked_queue: JobQueue) -> None:
    """Unique and keyed together: duplicates return the first job; the new jobs share one place."""
    first = UniqueKeyed.perform_later(account_id=1)
    assert UniqueKeyed.perform_later(account_id=1).id == first.id
    second = UniqueKeyed.perform_later(account_id=2)
    keyed = ["tests.keys.unique"]
    jobs = clocked_queue.store.claim(
        worker="w", limit=5, names=keyed, queues=None, now=clocked_queue.clock.now(), keyed=keyed
    )
    assert [job.id for job in jobs] == [first.id]
    assert second.refresh().status == "pending"

"""The process pool's misbehaving-job matrix: each misdeed ends its own attempt, never a slot or the worker.

Every case runs in a two-slot worker with real child processes: first two normal jobs warm both
children, then an innocent job and the misbehaving one run side by side. The misbehaving job's
first attempt must end within ``timeout + kill_grace + 1 s`` of its enqueue (as the worker records
it), the job must end as its policy says with an error history naming what happened, the innocent
job must complete in its own untouched child, and a following batch of normal jobs must run two
at a time (the peak read from a ledger the jobs write).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit import JobFailed, JobQueue
from tests import proc_jobs
from tests.conftest import FAST
from tests.proc_jobs import (
    ProcGrow,
    ProcKeyboardInterrupt,
    ProcOsExit,
    ProcSegfault,
    ProcSleep,
    ProcSpin,
    ProcSysExit,
    ProcWedged,
    alive,
)

KILL_GRACE = 0.5


@dataclass
class ProcQueue:
    queue: JobQueue
    tmp: Path


@pytest.fixture
def proc_queue(db_url: str, tmp_path: Path) -> Iterator[ProcQueue]:
    """A two-slot worker in this process whose process-isolated jobs run in real children."""
    q = jobkit.configure(
        database_url=db_url,
        concurrency=2,
        kill_grace=KILL_GRACE,
        max_crashes=2,
        max_memory_per_child="250MB",
        **FAST,
    )
    q.start()
    try:
        yield ProcQueue(q, tmp_path)
    finally:
        q.close()
        JobQueue.set_instance(None)


def warm(pq: ProcQueue) -> list[int]:
    """Run two normal jobs at once so that both children are up; returns their pids."""
    ledger = pq.tmp / "warm.ledger"
    handles = ProcSleep.perform_all_later([{"seconds": 0.3, "ledger": str(ledger)}] * 2)
    return [h.result(timeout=30) for h in handles]


def assert_full_concurrency(pq: ProcQueue, name: str = "batch") -> None:
    """Four 1 s jobs run two at a time: both slots are there, and the worker holds nothing after."""
    ledger = pq.tmp / f"{name}.ledger"
    handles = ProcSleep.perform_all_later([{"seconds": 1.0, "ledger": str(ledger)}] * 4)
    for handle in handles:
        assert isinstance(handle.result(timeout=30), int)
    assert proc_jobs.peak(ledger) == 2
    assert pq.queue.worker.running_count == 0
    assert pq.queue.worker.stuck_threads == 0


@dataclass(frozen=True)
class Case:
    job: type[jobkit.BaseJob[Any]]
    errors: list[str]
    says: str
    timeout: float = 0.0


CASES = {
    "sys_exit": Case(ProcSysExit, ["SystemExit", "SystemExit"], "3"),
    "keyboard_interrupt": Case(ProcKeyboardInterrupt, ["KeyboardInterrupt", "KeyboardInterrupt"], ""),
    # Crashes count toward max_crashes=2 although max_retries allows 5.
    "os_exit": Case(ProcOsExit, ["WorkerLost", "WorkerLost"], "exit code 7"),
    "segfault": Case(ProcSegfault, ["WorkerLost", "WorkerLost"], "signal SIGSEGV"),
    "infinite_loop": Case(ProcSpin, ["JobTimeout", "JobTimeout"], "was killed", timeout=1.0),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_a_misbehaving_process_job_ends_as_its_policy_says_and_spares_the_rest(
    proc_queue: ProcQueue, case: Case
) -> None:
    """Its attempt ends in time, its history names what happened, the innocent neighbour and the slots survive."""
    warm(proc_queue)
    innocent = ProcSleep.perform_later(seconds=2.5)
    enqueued = time.time()
    bad = case.job.perform_later()
    with pytest.raises(JobFailed):
        bad.result(timeout=30)
    info = bad.refresh()
    assert [e["type"] for e in info.errors] == case.errors
    assert all(case.says in e["message"] for e in info.errors), info.errors
    # From the enqueue (an upper bound of its start: the children are warm, the wake-up in-process)
    # to the moment the worker recorded how the first attempt ended (the entry's "at", stamped before
    # the row is written, so a busy database does not count against the job).
    first = float(info.errors[0]["at"]) - enqueued
    assert 0 <= first <= case.timeout + KILL_GRACE + 1.0, first
    innocent_pid = innocent.result(timeout=30)
    assert alive(innocent_pid), "the innocent job's child was taken down with the other"
    assert innocent.refresh().errors == []
    assert_full_concurrency(proc_queue)


def test_a_child_over_max_memory_finishes_its_job_then_is_replaced(proc_queue: ProcQueue) -> None:
    """A job that leaks past max_memory_per_child completes; its child exits and a fresh one takes the slot."""
    warm(proc_queue)
    grown = ProcGrow.perform_later(megabytes=300)
    pid = grown.result(timeout=30)
    assert grown.refresh().status == "completed"
    deadline = time.monotonic() + KILL_GRACE + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the child over its memory limit was kept"
    assert pid not in [c["pid"] for c in proc_queue.queue.worker.pool.children()]
    assert_full_concurrency(proc_queue)


def start_wedged(pq: ProcQueue) -> tuple[jobkit.JobHandle, jobkit.JobHandle, int]:
    """An innocent job and a wedged one running side by side in warm children; the wedged job's child pid."""
    warm(pq)
    ledger = pq.tmp / "wedged.ledger"
    innocent = ProcSleep.perform_later(seconds=2.5)
    handle = ProcWedged.perform_later(seconds=60, ledger=str(ledger))
    deadline = time.monotonic() + 10
    while not ledger.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return innocent, handle, proc_jobs.pids(ledger)[0]


def wait_status(handle: jobkit.JobHandle, status: str, timeout: float) -> float:
    """Seconds until the job shows ``status`` (a black-box poll of the row); fails after ``timeout``."""
    began = time.monotonic()
    while handle.status() != status:
        assert time.monotonic() - began < timeout, f"job {handle.id} still {handle.status()} after {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - began


@pytest.mark.parametrize(("request_", "status"), [("cancel", "cancelled"), ("kill", "cancelled"), ("pause", "paused")])
def test_cancel_kill_and_pause_end_a_wedged_process_job_within_kill_grace(
    proc_queue: ProcQueue, request_: str, status: str
) -> None:
    """A running job that ignores its token is ended (its child killed) within kill_grace of the request."""
    innocent, handle, wedged_pid = start_wedged(proc_queue)
    getattr(handle, request_)()
    took = wait_status(handle, status, 10)
    assert took <= KILL_GRACE + 1.0 + FAST["cancel_check_interval"], took
    assert handle.refresh().errors == []
    assert not alive(wedged_pid)
    assert alive(innocent.result(timeout=30))
    assert_full_concurrency(proc_queue)


def test_a_child_killed_from_outside_fails_only_its_job_as_a_crash(proc_queue: ProcQueue) -> None:
    """SIGKILL of a busy child (as the OOM killer does): WorkerLost naming the signal; the rest carries on."""
    innocent, handle, wedged_pid = start_wedged(proc_queue)
    os.kill(wedged_pid, signal.SIGKILL)
    with pytest.raises(JobFailed):
        handle.result(timeout=10)  # max_retries=0: the crash spent its only attempt
    [error] = handle.refresh().errors
    assert error["type"] == "WorkerLost" and "signal SIGKILL" in error["message"]
    assert handle.refresh().crashes == 1
    assert alive(innocent.result(timeout=30))
    assert_full_concurrency(proc_queue)


def test_a_mixed_worker_never_runs_more_than_its_concurrency(db_url: str, tmp_path: Path) -> None:
    """Thread and process jobs share one concurrency: three slots, six of each kind, never more than three at once."""
    q = jobkit.configure(database_url=db_url, concurrency=3, **FAST)
    q.start()
    try:
        ledger = tmp_path / "mixed.ledger"
        args = [{"seconds": 0.6, "ledger": str(ledger)}] * 6
        handles = proc_jobs.ThreadSleep.perform_all_later(args) + ProcSleep.perform_all_later(args)
        pids = {h.result(timeout=60) for h in handles}
        assert os.getpid() in pids and len(pids) > 1  # both kinds ran: in this process and in children
        assert proc_jobs.peak(ledger) == 3
        assert q.worker.peak_running == 3
    finally:
        q.close()
        JobQueue.set_instance(None)


def test_the_processes_pool_runs_jobs_without_an_isolation_option_in_children(db_url: str) -> None:
    """pool="processes" sends jobs with no isolation option to a child; isolation="thread" stays here."""
    q = jobkit.configure(database_url=db_url, concurrency=2, pool="processes", max_tasks_per_child=1, **FAST)
    q.start()
    try:
        first = proc_jobs.DefaultSleep.perform_later().result(timeout=30)
        second = proc_jobs.DefaultSleep.perform_later().result(timeout=30)
        assert os.getpid() not in (first, second)
        assert first != second  # max_tasks_per_child=1: each job in a fresh child
        assert proc_jobs.ThreadSleep.perform_later().result(timeout=30) == os.getpid()
    finally:
        q.close()
        JobQueue.set_instance(None)


def test_a_worker_that_runs_no_process_job_starts_no_child(queue: JobQueue) -> None:
    """The process pool costs nothing unused: thread jobs alone never make it."""
    queue.start()
    assert proc_jobs.ThreadSleep.perform_later().result(timeout=30) == os.getpid()
    assert queue.worker.pool.children() == []
    assert not queue.worker.pool.isolation.started

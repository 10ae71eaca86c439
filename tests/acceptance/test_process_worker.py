"""A real `jobkit worker --pool processes`: its children die with it, and SIGTERM drains them gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jobkit import JobQueue
from tests import proc_jobs
from tests.acceptance.test_cli_control import cli
from tests.acceptance.test_cli_worker import ROOT, env_for
from tests.proc_jobs import alive


def start_process_worker(db_url: str, *args: str) -> subprocess.Popen[str]:
    """`jobkit worker --app tests.proc_jobs --pool processes` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.proc_jobs", "--pool", "processes", *args],
        env=env_for(db_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a black-box condition on real processes until it holds, or fail after ``timeout``."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_sigkill_of_the_worker_leaves_no_child_running(db_url: str, producer: JobQueue, tmp_path: Path) -> None:
    """Children busy with jobs die with their worker (parent-death signal, end of file on the pipe)."""
    worker = start_process_worker(db_url, "--concurrency", "2")
    try:
        ledger = tmp_path / "wedged.ledger"
        proc_jobs.ProcWedged.perform_all_later([{"seconds": 60, "ledger": str(ledger)}] * 2)
        wait_for(lambda: ledger.exists() and len(proc_jobs.pids(ledger)) == 2, 60, "two jobs running in children")
        children = set(proc_jobs.pids(ledger))
        assert children <= children_of(worker.pid)
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=10)
        wait_for(lambda: not any(alive(pid) for pid in children), 5, "the children to die with their worker")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def test_sigterm_lets_running_process_jobs_finish_then_stops_the_children(
    db_url: str, producer: JobQueue, tmp_path: Path
) -> None:
    """SIGTERM: the jobs running in children complete within the grace, the children exit, the worker exits 0."""
    worker = start_process_worker(db_url, "--concurrency", "2", "--shutdown-grace", "10")
    try:
        ledger = tmp_path / "drain.ledger"
        marker = tmp_path / "started.ledger"
        handles = proc_jobs.ProcSleep.perform_all_later([{"seconds": 0.1, "ledger": str(marker)}] * 2)
        assert all(isinstance(h.result(timeout=60), int) for h in handles)  # both children are up
        children = children_of(worker.pid)
        assert len(children) >= 2
        running = proc_jobs.ProcSleep.perform_all_later([{"seconds": 2, "ledger": str(ledger)}] * 2)
        wait_for(lambda: all(h.status() == "running" for h in running), 30, "both jobs running")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, output
    assert [h.status() for h in running] == ["completed", "completed"], output
    assert not any(alive(pid) for pid in children)


def test_jobkit_workers_shows_the_pool_and_its_children(db_url: str, producer: JobQueue) -> None:
    """`jobkit workers` shows a process worker's pool and each child's pid after a heartbeat."""
    worker = start_process_worker(db_url, "--concurrency", "1")
    try:
        pid = proc_jobs.ProcSleep.perform_later(seconds=0.1).result(timeout=60)
        wait_for(lambda: str(pid) in cli(db_url, "workers").stdout, 10, "the child in `jobkit workers`")
        shown = cli(db_url, "workers")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert "processes" in shown.stdout and "idle" in shown.stdout

"""`jobs cancel` and `jobs kill` on jobs run by a real worker process, and the `workers` stuck column.

The kill and stuck tests run once the store has ``JobQueue.kill_job`` and ``WorkerRecord.stuck``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit import JobHandle, JobQueue
from tests.jobs import AddOne, Sleepy

ROOT = Path(__file__).resolve().parents[2]


def env_for(db_url: str) -> dict[str, str]:
    """Environment for jobkit subprocesses on ``db_url`` with a compressed timing profile."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBKIT_DATABASE_URL": db_url,
        "JOBKIT_POLL_INTERVAL": "0.2",
        "JOBKIT_HEARTBEAT_INTERVAL": "0.5",
        "JOBKIT_CANCEL_CHECK_INTERVAL": "0.1",
        "JOBKIT_KILL_GRACE": "3",
        "COLUMNS": "300",
    }


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``jobkit ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *args],
        env=env_for(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def worker(db_url: str, producer: JobQueue) -> Iterator[subprocess.Popen[str]]:
    """A `jobkit worker --app tests.jobs` process, stopped with SIGTERM at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.jobs"],
        env=env_for(db_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def wait_running(handle: JobHandle) -> None:
    """Poll (another process runs the job) until the job is running."""
    deadline = time.monotonic() + 30
    while handle.status() != "running":
        assert time.monotonic() < deadline, "the worker never started the job"
        time.sleep(0.05)


def test_cancel_of_a_running_job_says_it_was_asked_and_ends_within_kill_grace(
    db_url: str, producer: JobQueue, worker: subprocess.Popen[str]
) -> None:
    """`jobs cancel` on a running job answers "cancelling" and names kill_grace; the job then ends cancelled."""
    handle = Sleepy.perform_later(seconds=120)
    wait_running(handle)
    done = cli(db_url, "jobs", "cancel", str(handle.id))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"job {handle.id}: cancelling"), done.stdout
    assert "within kill_grace, 3s" in done.stdout
    deadline = time.monotonic() + 30
    while handle.status() != "cancelled":
        assert time.monotonic() < deadline, handle.status()
        time.sleep(0.05)


def test_cancel_of_a_pending_job_is_immediate(db_url: str, producer: JobQueue) -> None:
    """`jobs cancel` on a pending job cancels it at once."""
    handle = Sleepy.perform_later(seconds=1)
    done = cli(db_url, "jobs", "cancel", str(handle.id))
    assert (done.returncode, done.stdout.strip()) == (0, f"job {handle.id}: cancelled"), done.stderr
    assert handle.status() == "cancelled"


def test_kill_of_a_pending_job_cancels_it(db_url: str, producer: JobQueue) -> None:
    """`jobs kill` on a pending job ends it cancelled at once."""
    handle = Sleepy.perform_later(seconds=1)
    done = cli(db_url, "jobs", "kill", str(handle.id))
    assert (done.returncode, done.stdout.strip()) == (0, f"job {handle.id}: cancelled"), done.stderr
    assert handle.status() == "cancelled"


def test_kill_of_a_running_job_asks_its_worker(db_url: str, producer: JobQueue, worker: subprocess.Popen[str]) -> None:
    """`jobs kill` on a running job answers "killing" and stores the kill request (or the job already ended)."""
    handle = Sleepy.perform_later(seconds=120)
    wait_running(handle)
    done = cli(db_url, "jobs", "kill", str(handle.id))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"job {handle.id}: killing"), done.stdout
    info = handle.refresh()
    assert info.status == "cancelled" or info.cancel_requested == "kill", info


def test_kill_of_an_unknown_or_finished_job_is_refused(db_url: str, producer: JobQueue) -> None:
    """`jobs kill` refuses a job that does not exist or has ended, with a clear message and exit 1."""
    handle = AddOne.perform_later(n=1)
    assert producer.run_once() == 1
    missing = cli(db_url, "jobs", "kill", "999999")
    assert missing.returncode == 1 and "job 999999 does not exist" in missing.stderr
    ended = cli(db_url, "jobs", "kill", str(handle.id))
    assert ended.returncode == 1 and f"job {handle.id} is completed: nothing to kill" in ended.stderr


def test_workers_shows_the_stuck_column(db_url: str, producer: JobQueue) -> None:
    """`jobkit workers` has a stuck column once workers record their stuck threads."""
    producer.store.register_worker("w-stuck-test", host="host", pid=1, queues=None, concurrency=1)
    done = cli(db_url, "workers")
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "host" in line)
    assert "stuck" in header

"""The CLI and real worker processes, end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobkit import JobQueue
from tests.jobs import AddOne, Sleepy

ROOT = Path(__file__).resolve().parents[2]


def env_for(db_url: str) -> dict[str, str]:
    """Environment for a worker subprocess on ``db_url`` with a compressed timing profile."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBKIT_DATABASE_URL": db_url,
        "JOBKIT_POLL_INTERVAL": "0.2",
        "JOBKIT_HEARTBEAT_INTERVAL": "0.5",
        "JOBKIT_RESCUE_AFTER": "3",
    }


def start_worker(db_url: str, *args: str) -> subprocess.Popen[str]:
    """Start `jobkit worker --app tests.jobs` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.jobs", *args],
        env=env_for(db_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_worker_process_runs_jobs_and_exits_0_on_sigterm(db_url: str, producer: JobQueue) -> None:
    """A worker process drains jobs enqueued from another process and exits 0 on SIGTERM."""
    worker = start_worker(db_url, "--concurrency", "3")
    try:
        handles = AddOne.perform_all_later([{"n": i} for i in range(50)])
        assert [h.result(timeout=30) for h in handles] == [i + 1 for i in range(50)]
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output


def test_worker_only_claims_its_queues(db_url: str, producer: JobQueue) -> None:
    """--queues limits what a worker claims."""
    worker = start_worker(db_url, "--queues", "mailers")
    try:
        ignored = AddOne.perform_later(n=1)
        taken = AddOne.set(queue="mailers").perform_later(n=2)
        assert taken.result(timeout=30) == 3
        assert ignored.status() == "pending"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)


def test_sigterm_returns_a_long_job_to_pending(db_url: str, producer: JobQueue) -> None:
    """A job still running after the grace period goes back to pending with no attempt spent."""
    worker = start_worker(db_url, "--shutdown-grace", "0.5")
    try:
        handle = Sleepy.perform_later(seconds=120)
        deadline = time.monotonic() + 30
        while handle.status() != "running":
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.05)
    finally:
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert time.monotonic() - started < 0.5 + 4
    info = handle.refresh()
    assert (info.status, info.attempt) == ("pending", 0)


def test_db_upgrade_creates_the_schema(db_url: str) -> None:
    """`jobkit db upgrade` creates jobkit's tables on an empty database."""
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", "--database-url", db_url, "db", "upgrade"],
        env=env_for(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    queue = JobQueue(database_url=db_url, auto_migrate=False)
    assert queue.stats()["by_status"] == {}
    queue.close()


def test_worker_refuses_bad_settings(tmp_path: Path) -> None:
    """An invalid setting is a clear one-line error, not a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.jobs", "--concurrency", "0"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "JOBKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "concurrency" in done.stderr and "Traceback" not in done.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`make demo`'s program runs the example app on SQLite, exits 0, and every line it prints fits 80 columns."""
    env = {k: v for k, v in os.environ.items() if k != "JOBKIT_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "example_app.demo"],
        env={**env, "PYTHONPATH": str(ROOT), "COLUMNS": "80"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo finished OK" in done.stdout
    # Rich wraps a long line at 80 columns: a continuation line starting with a quote is a wrapped dict.
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), done.stdout
    assert not [line for line in lines if line.startswith("'")], done.stdout
    # 5 app jobs and 9 CRM syncs; a run that spans 02:00 Berlin time also ran the nightly digest.
    assert "jobs: 14 completed, 3 pending" in lines or "jobs: 15 completed, 3 pending" in lines, done.stdout


def test_package_metadata_uses_an_spdx_license() -> None:
    """pyproject's license is the SPDX string setuptools wants (no `project.license` deprecation at install)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"

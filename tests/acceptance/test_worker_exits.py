"""A real worker process whose threads are stuck past max_stuck_threads stops claiming and exits 4."""

from __future__ import annotations

import subprocess
import sys
import time

from jobkit import JobFailed, JobQueue
from tests.acceptance.test_cli_worker import ROOT, env_for
from tests.wedge_jobs import IgnoresToken


def test_a_worker_with_too_many_stuck_threads_exits_4(db_url: str, producer: JobQueue) -> None:
    """With max_stuck_threads=0 one job that ignores its timeout makes `jobkit worker` drain and exit 4."""
    env = {**env_for(db_url), "JOBKIT_KILL_GRACE": "0.3", "JOBKIT_MAX_STUCK_THREADS": "0"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.wedge_jobs", "--shutdown-grace", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        handle = IgnoresToken.perform_later(seconds=30)
        try:
            handle.result(timeout=20)
        except JobFailed as failed:
            assert failed.error_type == "JobTimeout"
        started = time.monotonic()
        output, _ = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 4, output
    assert time.monotonic() - started < 15
    assert "max_stuck_threads=0" in output


def test_a_worker_whose_tables_are_dropped_exits_2(db_url: str, producer: JobQueue) -> None:
    """Tables dropped under a running worker: it stops with exit 2 and says to run `jobkit db upgrade`."""
    from tests.jobs import AddOne

    worker = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.jobs"],
        env=env_for(db_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert AddOne.perform_later(n=1).result(timeout=30) == 2  # it runs
        with producer.store.write() as conn:
            for table in ("jobkit_jobs", "jobkit_queue_pauses", "jobkit_workers", "jobkit_alembic_version"):
                conn.exec_driver_sql(f"DROP TABLE {table}")
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 2, output
    assert "has no jobkit tables: run `jobkit db upgrade`" in output
    assert "Traceback" not in output

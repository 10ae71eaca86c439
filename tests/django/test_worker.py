"""``manage.py jobkit_worker`` as real processes: results read from another process, signals sent
where each thing happens, a SIGKILLed worker's task rescued and completed, SIGTERM draining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.tasks import TaskResultStatus

from tests.django import tasks

MANAGE = Path(__file__).resolve().parent / "project" / "manage.py"
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``predicate`` (a real process does the work) until truthy; fail naming ``what``."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Workers:
    """``manage.py jobkit_worker`` processes on the test's database; killed at the end."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "JOBKIT_TEST_DJANGO_DB": self.db_url}
        log = open(self.tmp_path / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - the process holds it
        proc = subprocess.Popen(
            [sys.executable, "-u", str(MANAGE), "jobkit_worker", "--concurrency", "2", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def output(self, index: int) -> str:
        return (self.tmp_path / f"worker-{index}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def workers(django_db: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(django_db, tmp_path)
    try:
        yield w
    finally:
        w.close()


def events(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "events.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def finished(result: Any) -> Any:
    result.refresh()
    return result.is_finished and result


def test_worker_process_runs_tasks_and_signals_there(workers: Workers, tmp_path: Path) -> None:
    """A worker process runs the task; started/finished come from it, enqueued from here; the
    result is read in this process."""
    result = tasks.add.enqueue(20, 22)
    proc = workers.start()
    wait_until(lambda: finished(result), 30, "the task to finish")
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    seen = {e["kind"]: e["pid"] for e in events(tmp_path) if e.get("id") == result.id}
    assert seen == {"enqueued": os.getpid(), "started": proc.pid, "finished": proc.pid}
    [worker_id] = result.worker_ids
    assert f"jobkit worker {worker_id} for TASKS['default']" in workers.output(0)


def test_a_task_outside_autodiscovery_waiting_at_start_up_runs(workers: Workers) -> None:
    """A task in a module no app imports, with a job waiting, is imported at start-up and runs."""
    from tests.django import elsewhere

    result = elsewhere.hidden.enqueue("early")
    workers.start()
    wait_until(lambda: finished(result), 30, "the waiting task to finish")
    assert result.return_value == "EARLY"


def test_a_task_outside_autodiscovery_enqueued_later_runs(workers: Workers) -> None:
    """A task no app imports, first enqueued while the worker runs, is found by its rescan (TASK_RESCAN)."""
    from tests.django import elsewhere

    workers.start()
    wait_until(lambda: "jobkit worker" in workers.output(0), 30, "the worker's banner")
    assert "django:tests.django.elsewhere.hidden" not in workers.output(0)
    result = elsewhere.hidden.enqueue("late")
    wait_until(lambda: finished(result), 30, "the task enqueued later to finish")
    assert result.return_value == "LATE"


def test_a_killed_workers_task_is_rescued_and_completed(workers: Workers, tmp_path: Path) -> None:
    """SIGKILL mid-task: a second worker rescues the task (jobkit's default policy) and completes it."""
    control = tmp_path / "control"
    control.mkdir()
    result = tasks.held.enqueue(str(control))
    first = workers.start()
    wait_until(lambda: (control / "started-1").exists(), 30, "the first attempt to start")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    (control / "release").write_text("")
    workers.start()
    wait_until(lambda: finished(result), 30, "the rescued task to finish")
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2  # the second attempt ran it to the end
    assert result.attempts == 2 and len(set(result.worker_ids)) == 2


def test_sigterm_drains_the_running_task(workers: Workers, tmp_path: Path) -> None:
    """SIGTERM lets the running task finish, then the worker exits 0."""
    control = tmp_path / "control"
    control.mkdir()
    result = tasks.held.enqueue(str(control))
    proc = workers.start()
    wait_until(lambda: (control / "started-1").exists(), 30, "the task to start")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # the drain has begun; the task is still held
    assert proc.poll() is None
    (control / "release").write_text("")
    assert proc.wait(20) == 0
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 1

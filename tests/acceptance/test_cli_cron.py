"""``jobkit cron`` against a real worker process firing on the real clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from jobkit import JobQueue
from tests.acceptance.test_cli_admin import ROOT, env_for, jobkit_cli
from tests.chaos.cluster import wait_until
from tests.cron_jobs import Report


def listed(db_url: str, key: str) -> dict[str, object]:
    """The ``cron list --json`` row of ``key``."""
    rows = json.loads(jobkit_cli(db_url, "cron", "list", "--json").stdout)
    return next(row for row in rows if row["key"] == key)


@pytest.mark.slow
def test_a_worker_process_fires_a_schedule_and_the_cli_shows_it(db_url: str, producer: JobQueue) -> None:
    """A worker fires an every-second schedule; list shows its fires, pause stops it, run fires it now."""
    producer.schedule(Report, cron="* * * * * *", args={"scope": "cli"}, key="every-second", catchup="skip")
    env = {**env_for(db_url), "JOBKIT_CRON_INTERVAL": "0.2"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.cron_jobs"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: producer.jobs(name="tests.cron.report", status="completed"), 30, "a fired job to complete")
        row = listed(db_url, "every-second")
        assert row["last_fire_at"] is not None and row["next_fire_at"] is not None
        assert datetime.fromisoformat(str(row["next_fire_at"])) > datetime.fromisoformat(str(row["last_fire_at"]))
        assert row["last_job_status"] in ("pending", "running", "completed")

        assert jobkit_cli(db_url, "cron", "pause", "every-second").stdout.strip() == "schedule every-second paused"
        time.sleep(0.5)  # a tick that read the schedule just before the pause may still fire once
        count = len(producer.jobs(name="tests.cron.report", limit=1000))
        time.sleep(1.5)
        assert len(producer.jobs(name="tests.cron.report", limit=1000)) == count
        assert listed(db_url, "every-second")["next_fire_at"] is None

        ran = jobkit_cli(db_url, "cron", "run", "every-second").stdout.strip()
        assert ran.startswith("schedule every-second: enqueued job ")
        job_id = int(ran.rsplit(" ", 1)[1])
        assert producer.handle(job_id).result(timeout=30) == "cli"

        assert jobkit_cli(db_url, "cron", "resume", "every-second").stdout.strip() == "schedule every-second resumed"
        wait_until(lambda: len(producer.jobs(name="tests.cron.report", limit=1000)) > count + 1, 30, "fires again")
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output


def test_the_worker_upserts_declared_schedules_and_list_shows_them(db_url: str) -> None:
    """``cron list`` shows the schedules declared in the loaded app, with their next fire."""
    rows = json.loads(jobkit_cli(db_url, "cron", "--app", "tests.cron_jobs", "list", "--json").stdout)
    [row] = [r for r in rows if r["key"] == "tests.cron.nightly"]
    assert (row["cron"], row["timezone"], row["source"]) == ("0 2 * * *", "Europe/Berlin", "code")
    assert datetime.fromisoformat(row["next_fire_at"]).minute == 0
    table = subprocess.run(
        [sys.executable, "-m", "jobkit", "cron", "list"],
        env={**env_for(db_url), "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "tests.cron.nightly" in table and "Europe/Berlin" in table


def test_an_unknown_key_is_one_clear_line(db_url: str) -> None:
    """run, pause and resume of a key no schedule has exit 1 with one line naming it."""
    for verb in ("run", "pause", "resume"):
        done = jobkit_cli(db_url, "cron", verb, "nope", ok=False)
        assert done.returncode == 1
        assert done.stderr.strip() == "Error: no schedule with key 'nope'"

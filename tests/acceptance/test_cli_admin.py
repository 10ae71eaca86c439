"""The real ``jobkit`` CLI controlling jobs run by a real worker process, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit import JobQueue
from tests.jobs import AddOne
from tests.long_jobs import STAGES, FailsUntilFixed, ImportDocument, RaisesDiscard, expected_result, ran

ROOT = Path(__file__).resolve().parents[2]
DOC = "Alpha beta gamma. Beta gamma! Gamma?"


def env_for(db_url: str) -> dict[str, str]:
    """Environment for jobkit subprocesses on ``db_url`` with a compressed timing profile."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBKIT_DATABASE_URL": db_url,
        "JOBKIT_POLL_INTERVAL": "0.2",
        "JOBKIT_HEARTBEAT_INTERVAL": "0.5",
        "JOBKIT_CANCEL_CHECK_INTERVAL": "0.1",
    }


def jobkit_cli(db_url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``jobkit ARGS`` in a subprocess; by default assert it exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", *args],
        env=env_for(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert done.returncode == 0, f"jobkit {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def worker(db_url: str) -> Iterator[subprocess.Popen[str]]:
    """``jobkit worker --app tests.long_jobs,tests.jobs`` as a real process, stopped with SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.long_jobs,tests.jobs"],
        env=env_for(db_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


def test_cli_pauses_and_resumes_a_job_in_a_worker_process(
    db_url: str, producer: JobQueue, worker: subprocess.Popen[str], control: Path
) -> None:
    """`jobs pause` stops a running job at its token, `jobs show` shows its checkpoint, `jobs resume` finishes it."""
    (control / "hold-transform").touch()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    for event in handle.stream(timeout=30):
        if event.stage == "transform":
            break
    assert jobkit_cli(db_url, "jobs", "pause", str(handle.id)).stdout.strip() == f"job {handle.id}: pausing"
    assert list(handle.stream(timeout=30, until_paused=True))[-1].type == "paused"
    shown = json.loads(jobkit_cli(db_url, "jobs", "show", str(handle.id)).stdout)
    assert (shown["status"], shown["attempt"], shown["checkpoint"]["stage"]) == ("paused", 0, "extract")
    assert shown["progress"]["stage"] == "transform"
    (control / "hold-transform").unlink()
    assert jobkit_cli(db_url, "jobs", "resume", str(handle.id)).stdout.strip() == f"job {handle.id}: pending"
    assert handle.result(timeout=30) == expected_result(DOC)
    assert ran(control) == [f"1 {stage}" for stage in STAGES]


def test_cli_watch_follows_every_stage_from_another_process(
    db_url: str, producer: JobQueue, worker: subprocess.Popen[str], control: Path
) -> None:
    """`jobs watch --json` in its own process prints each stage in order, then the result, and exits 0."""
    (control / "hold-extract").touch()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "jobs", "watch", str(handle.id), "--json", "--timeout", "30"],
        env=env_for(db_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for event in handle.stream(timeout=30):
        if event.stage == "extract":
            break
    (control / "hold-extract").unlink()
    output, errors = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, errors
    events = [json.loads(line) for line in output.splitlines()]
    stages: list[str] = []
    for event in events:
        if event["stage"] and (not stages or stages[-1] != event["stage"]):
            stages.append(event["stage"])
    assert stages == list(STAGES)
    assert (events[-1]["type"], events[-1]["result"]) == ("completed", expected_result(DOC))


def test_cli_watch_draws_one_progress_bar(
    db_url: str, producer: JobQueue, worker: subprocess.Popen[str], control: Path
) -> None:
    """`jobs watch` without --json redraws one bar (stage, percent) in place of a line per event, then the result."""
    (control / "hold-extract").touch()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "jobs", "watch", str(handle.id), "--timeout", "30"],
        env={**env_for(db_url), "COLUMNS": "100"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for event in handle.stream(timeout=30):
        if event.stage == "extract":
            break
    (control / "hold-extract").unlink()
    output, errors = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, errors
    lines = output.splitlines()
    # Into a pipe Rich draws the bar once, as it ends: one bar line and the outcome, whatever the stages.
    assert len(lines) == 2, output
    assert lines[0].startswith(f"job {handle.id} completed") and lines[0].rstrip().endswith("100%"), output
    assert lines[1] == f"completed: {json.dumps(expected_result(DOC))}"


def test_cli_cancel_retry_discard_and_delete(db_url: str, producer: JobQueue) -> None:
    """Each job action reports what it did, and refuses (exit 1, with the job's status) what it cannot do."""
    job_id = str(AddOne.perform_in(3600, n=1).id)
    refused = jobkit_cli(db_url, "jobs", "delete", job_id, ok=False)
    assert refused.returncode == 1 and f"job {job_id} is pending" in refused.stderr
    assert jobkit_cli(db_url, "jobs", "pause", job_id).stdout.strip() == f"job {job_id}: paused"
    assert jobkit_cli(db_url, "jobs", "cancel", job_id).stdout.strip() == f"job {job_id}: cancelled"
    assert jobkit_cli(db_url, "jobs", "retry", job_id).stdout.strip() == f"job {job_id}: pending"
    discarded = jobkit_cli(db_url, "jobs", "discard", job_id, "--reason", "duplicate order")
    assert discarded.stdout.strip() == f"job {job_id}: failed"
    assert producer.handle(int(job_id)).refresh().errors[-1]["message"] == "duplicate order"
    assert jobkit_cli(db_url, "jobs", "delete", job_id).stdout.strip() == f"job {job_id}: deleted"
    missing = jobkit_cli(db_url, "jobs", "show", job_id, ok=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_cli_clear_and_retry_failed(db_url: str, producer: JobQueue, control: Path) -> None:
    """`jobs retry-failed --name` and `jobs clear failed|completed` act on the matching jobs only."""
    (control / "broken").touch()
    fixable = [FailsUntilFixed.perform_later(control=str(control)) for _ in range(2)]
    hopeless = RaisesDiscard.perform_later()
    done = AddOne.perform_later(n=1)
    producer.drain()
    (control / "broken").unlink()
    retried = jobkit_cli(db_url, "jobs", "retry-failed", "--name", "long.fails_until_fixed")
    assert retried.stdout.strip() == "retrying 2 failed jobs"
    producer.drain()
    assert [h.result(timeout=5) for h in fixable] == ["fixed", "fixed"]
    assert jobkit_cli(db_url, "jobs", "clear", "failed").stdout.strip() == "deleted 1 failed jobs"
    kept = jobkit_cli(db_url, "jobs", "clear", "completed", "--older-than", "1h")
    assert kept.stdout.strip() == "deleted 0 completed jobs"
    assert producer.job_info(hopeless.id) is None and done.status() == "completed"


def test_cli_clear_filters_by_type_queue_and_age(db_url: str, producer: JobQueue) -> None:
    """`jobs clear completed --name --queue --older-than` deletes only the matching finished jobs."""
    match = AddOne.perform_later(n=1)
    other_queue = AddOne.set(queue="other").perform_later(n=2)
    other_type = ImportDocument.perform_later(doc=DOC)
    producer.drain()
    too_recent = jobkit_cli(db_url, "jobs", "clear", "completed", "--name", "tests.add_one", "--older-than", "1h")
    assert too_recent.stdout.strip() == "deleted 0 completed jobs"
    cleared = jobkit_cli(
        db_url, "jobs", "clear", "completed", "--name", "tests.add_one", "--queue", "default", "--older-than", "0s"
    )
    assert cleared.stdout.strip() == "deleted 1 completed jobs"
    assert producer.job_info(match.id) is None
    assert (other_queue.status(), other_type.status()) == ("completed", "completed")


def test_cli_queue_pause_holds_a_worker_process(
    db_url: str, producer: JobQueue, worker: subprocess.Popen[str], control: Path
) -> None:
    """`queues pause` stops every worker claiming that queue until `queues resume`."""
    assert jobkit_cli(db_url, "queues", "pause", "imports", "--force").stdout.strip() == "queue imports paused"
    held = FailsUntilFixed.perform_later(control=str(control))
    assert AddOne.perform_later(n=1).result(timeout=30) == 2
    assert held.status() == "pending"
    assert jobkit_cli(db_url, "queues", "list").stdout.splitlines()[-1] == "paused: imports"
    assert jobkit_cli(db_url, "queues", "resume", "imports").stdout.strip() == "queue imports resumed"
    assert held.result(timeout=30) == "fixed"


def test_cli_stats_and_types(db_url: str, producer: JobQueue) -> None:
    """`stats --json` counts jobs by status and type; `types --app --json` lists the registered options."""
    AddOne.perform_later(n=1).pause()
    AddOne.perform_later(n=2)
    stats = json.loads(jobkit_cli(db_url, "stats", "--json").stdout)
    assert stats["by_status"] == {"paused": 1, "pending": 1}
    assert stats["by_type"] == {"tests.add_one": {"paused": 1, "pending": 1}}
    types = json.loads(jobkit_cli(db_url, "types", "--app", "tests.long_jobs", "--json").stdout)
    assert types["long.import_document"]["max_retries"] == 3
    assert types["long.retry_on"]["retry_on"] == ["TransientError"]

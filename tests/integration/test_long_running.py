"""Long-running jobs: progress, checkpoints, pause and resume, error kinds, streams, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jobkit import JobEvent, JobFailed, JobQueue, ResultTimeout
from tests.conftest import FAST
from tests.long_jobs import (
    STAGES,
    ImportDocument,
    ImportDocumentAsync,
    ProgressThenHold,
    QuickStages,
    RaisesDiscard,
    RaisesDiscardOn,
    RetriesOnlyTransient,
    TightProgress,
    expected_result,
    ran,
)
from tests.observe import EventLog

ROOT = Path(__file__).resolve().parents[2]
DOC = " ".join(["The quick brown fox jumps over the lazy dog.", "The dog sleeps; the fox runs!"] * 5)


def stages_run(control: Path) -> list[str]:
    return [line.split()[1] for line in ran(control)]


# -- pause and resume --------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_pause_at_a_stage_then_resume_gives_the_uninterrupted_result(
    queue: JobQueue, events: EventLog, control: Path, stage: str
) -> None:
    """A job paused at any stage and resumed returns exactly what an uninterrupted run returns."""
    (control / f"hold-{stage}").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage=stage)
    assert handle.pause() == "pausing"
    events.wait_for(handle.id, "paused")
    (control / f"hold-{stage}").unlink()
    assert handle.resume() == "pending"
    assert handle.result(timeout=20) == expected_result(DOC) == ImportDocument.perform_now(doc=DOC)


@pytest.mark.parametrize("stage", STAGES)
def test_resumed_job_skips_the_stages_it_finished(queue: JobQueue, events: EventLog, control: Path, stage: str) -> None:
    """After a pause, the job continues from its checkpoint: every stage's work runs exactly once."""
    (control / f"hold-{stage}").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage=stage)
    handle.pause()
    events.wait_for(handle.id, "paused")
    assert stages_run(control) == list(STAGES[: STAGES.index(stage)])
    (control / f"hold-{stage}").unlink()
    handle.resume()
    handle.result(timeout=20)
    assert ran(control) == [f"1 {s}" for s in STAGES]


def test_paused_job_keeps_its_checkpoint_and_spends_no_attempt(
    queue: JobQueue, events: EventLog, control: Path
) -> None:
    """A paused job is 'paused', attempt given back, no error recorded, its last checkpoint stored."""
    (control / "hold-load").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage="load")
    handle.pause()
    events.wait_for(handle.id, "paused")
    info = handle.refresh()
    assert (info.status, info.attempt, info.errors, info.worker_id) == ("paused", 0, [], None)
    assert info.checkpoint is not None and info.checkpoint["stage"] == "transform"
    assert info.checkpoint["data"]["tokens"][:3] == ["the", "quick", "brown"]


def test_async_job_paused_mid_stage_resumes_from_its_checkpoint(
    queue: JobQueue, events: EventLog, control: Path
) -> None:
    """An async job paused while it waits is cancelled on the loop, kept 'paused', and resumes after extract."""
    (control / "hold-transform").touch()
    queue.start()
    handle = ImportDocumentAsync.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage="transform")
    assert handle.pause() == "pausing"
    events.wait_for(handle.id, "paused")
    info = handle.refresh()
    assert (info.status, info.attempt, info.errors) == ("paused", 0, [])
    assert info.checkpoint is not None and info.checkpoint["stage"] == "extract"
    (control / "hold-transform").unlink()
    assert handle.resume() == "pending"
    assert handle.result(timeout=20) == expected_result(DOC)
    assert ran(control) == [f"1 {s}" for s in STAGES]


def test_retried_job_resumes_from_its_checkpoint(queue: JobQueue, events: EventLog, control: Path) -> None:
    """A job discarded after two stages and then retried keeps its checkpoint and runs only the last stage."""
    (control / "hold-load").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage="load")
    handle.pause()
    events.wait_for(handle.id, "paused")
    assert queue.discard_job(handle.id, "operator gave up") is True
    (control / "hold-load").unlink()
    assert handle.retry() is True
    assert handle.result(timeout=20) == expected_result(DOC)
    assert ran(control) == ["1 extract", "1 transform", "1 load"]
    assert [e["message"] for e in handle.refresh().errors] == ["operator gave up"]


def test_pausing_a_pending_job_holds_it_from_claims(queue: JobQueue) -> None:
    """A paused pending job is not claimed until it is resumed."""
    handle = ImportDocument.perform_later(doc=DOC)
    assert handle.pause() == "paused"
    assert queue.run_once() == 0
    assert handle.status() == "paused"
    assert handle.resume() == "pending"
    assert queue.run_once() == 1
    assert handle.result(timeout=5) == expected_result(DOC)


def test_concurrent_jobs_run_on_while_one_is_paused(queue: JobQueue, events: EventLog, tmp_path: Path) -> None:
    """Pausing one of several running jobs leaves the others untouched; it finishes after resume."""
    controls = []
    for name in "abc":
        (tmp_path / name).mkdir()
        controls.append(tmp_path / name)
    (controls[1] / "hold-transform").touch()
    queue.start()
    first, paused, third = (ImportDocument.perform_later(doc=DOC, control=str(c)) for c in controls)
    events.wait_for(paused.id, "progress", stage="transform")
    assert paused.pause() == "pausing"
    events.wait_for(paused.id, "paused")
    assert first.result(timeout=20) == third.result(timeout=20) == expected_result(DOC)
    assert paused.status() == "paused"
    (controls[1] / "hold-transform").unlink()
    paused.resume()
    assert paused.result(timeout=20) == expected_result(DOC)


def test_resuming_a_job_that_is_not_paused_reports_its_status(queue: JobQueue) -> None:
    """resume() on a pending or finished job changes nothing and returns its status."""
    handle = ImportDocument.perform_later(doc=DOC)
    assert handle.resume() == "pending"
    queue.drain()
    assert handle.resume() == "completed"


# -- errors: transient and permanent ------------------------------------------------------------------


def test_transient_error_is_retried_from_the_checkpoint_and_succeeds(queue: JobQueue, control: Path) -> None:
    """A transient error in the last stage is retried; the retry resumes there and succeeds."""
    (control / "fail-load").touch()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    assert queue.drain() == 2
    assert handle.result(timeout=5) == expected_result(DOC)
    info = handle.refresh()
    assert (info.attempt, [e["type"] for e in info.errors]) == (2, ["TransientError"])
    assert ran(control) == ["1 extract", "1 transform", "2 load"]


def test_retry_on_error_is_retried_until_it_succeeds(queue: JobQueue) -> None:
    """An exception listed in retry_on is retried per the policy, then the job completes."""
    handle = RetriesOnlyTransient.perform_later(fail_times=2)
    assert queue.drain() == 3
    assert handle.result(timeout=5) == "ok on attempt 3"
    assert [e["type"] for e in handle.refresh().errors] == ["TransientError", "TransientError"]


@pytest.mark.parametrize(
    ("job", "args", "error"),
    [
        (RaisesDiscard, {}, "Discard"),
        (RaisesDiscardOn, {}, "Unrecoverable"),
        (RetriesOnlyTransient, {"fail_times": -1}, "KeyError"),
    ],
    ids=["Discard", "discard_on", "outside-retry_on"],
)
def test_permanent_error_fails_at_once_without_retry(
    queue: JobQueue, job: Any, args: dict[str, Any], error: str
) -> None:
    """Discard, discard_on and errors outside retry_on fail on the first attempt, retries unspent."""
    handle = job.perform_later(**args)
    assert queue.drain() == 1
    with pytest.raises(JobFailed) as failure:
        handle.result(timeout=5)
    assert [e["type"] for e in failure.value.errors] == [error]
    info = handle.refresh()
    assert (info.status, info.attempt, info.max_retries) == ("failed", 1, 3)


def test_stored_arguments_that_fail_validation_are_permanent(queue: JobQueue) -> None:
    """Arguments that no longer fit the schema fail the job once, never retried."""
    handle = ImportDocument.perform_later(doc=DOC)
    with queue.store.write() as conn:
        conn.execute(sa.text("UPDATE jobkit_jobs SET args = '{\"doc\": 5}' WHERE id = :id"), {"id": handle.id})
    assert queue.drain() == 1
    info = handle.refresh()
    assert (info.status, info.attempt, len(info.errors)) == ("failed", 1, 1)
    assert "no longer fit" in info.errors[0]["message"]


def test_deleting_a_job_removes_its_checkpoint(queue: JobQueue, events: EventLog, control: Path) -> None:
    """delete() refuses a paused job; once cancelled, it removes the row with its checkpoint and progress."""
    (control / "hold-load").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage="load")
    handle.pause()
    events.wait_for(handle.id, "paused")
    assert handle.refresh().checkpoint is not None
    assert queue.delete_job(handle.id) is False
    assert handle.cancel() == "cancelled"
    assert queue.delete_job(handle.id) is True
    assert queue.job_info(handle.id) is None
    with queue.store.read() as conn:
        left = conn.execute(sa.text("SELECT COUNT(*) FROM jobkit_jobs WHERE checkpoint IS NOT NULL")).scalar()
    assert left == 0


# -- progress -------------------------------------------------------------------------------------------


def test_a_tight_progress_loop_makes_only_a_handful_of_writes(queue: JobQueue, events: EventLog) -> None:
    """10,000 progress calls in a tight loop become a few coalesced writes; the last report is stored."""
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("UPDATE jobkit_jobs SET progress"):
            writes.append(statement)

    sa.event.listen(queue.store.engine, "before_cursor_execute", count)
    handle = TightProgress.perform_later(calls=10_000)
    started = time.monotonic()
    assert queue.drain() == 1
    elapsed = time.monotonic() - started
    assert handle.result(timeout=5) == 10_000
    queue.events.flush()
    assert len(writes) <= 3 + 4 * elapsed, f"{len(writes)} progress writes in {elapsed:.2f}s"
    assert len(events.of(handle.id, "progress")) <= len(writes)
    stored = handle.progress()
    assert stored is not None
    assert (stored["percent"], stored["message"], stored["seq"]) == (100, "done", 10_001)


def test_coalesced_progress_reaches_the_database_within_the_interval(
    queue: JobQueue, events: EventLog, control: Path
) -> None:
    """The newest of a burst of reports is written shortly after, while the job is still running."""
    (control / "hold").touch()
    queue.start()
    handle = ProgressThenHold.perform_later(steps=20, control=str(control))
    events.wait_for(handle.id, "progress", message="step 19", timeout=5)
    stored = handle.progress()
    assert stored is not None and stored["message"] == "step 19" and handle.status() == "running"
    assert len(events.of(handle.id, "progress")) <= 3
    (control / "hold").unlink()
    assert handle.result(timeout=10) == 20


_READER = """
import json, sys, time
import jobkit
handle = jobkit.JobQueue.instance().handle(int(sys.argv[1]))
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    progress = handle.progress()
    if progress and progress.get("stage") == sys.argv[2]:
        print(json.dumps(progress))
        break
    time.sleep(0.05)
"""


@pytest.mark.parametrize("job", [ImportDocument, ImportDocumentAsync], ids=["sync", "async"])
def test_progress_is_visible_from_another_process(queue: JobQueue, events: EventLog, control: Path, job: Any) -> None:
    """A separate process reads a running job's progress by id."""
    (control / "hold-transform").touch()
    queue.start()
    handle = job.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage="transform")
    env = {**os.environ, "JOBKIT_DATABASE_URL": queue.settings.database_url, "PYTHONPATH": str(ROOT)}
    reader = subprocess.run(
        [sys.executable, "-c", _READER, str(handle.id), "transform"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reader.returncode == 0, reader.stderr
    seen = json.loads(reader.stdout)
    assert (seen["stage"], seen["message"], round(seen["percent"], 1)) == ("transform", "starting transform", 33.3)
    assert seen["stages"] == ["extract", "transform"]
    (control / "hold-transform").unlink()
    assert handle.result(timeout=20) == expected_result(DOC)


# -- streams --------------------------------------------------------------------------------------------


def collect_stream(handle: Any, out: list[JobEvent], **kwargs: Any) -> threading.Thread:
    """Consume handle.stream() on a thread into ``out``."""
    thread = threading.Thread(target=lambda: out.extend(handle.stream(timeout=30, **kwargs)), daemon=True)
    thread.start()
    return thread


def stage_sequence(stream: list[JobEvent]) -> list[str]:
    """The stages a stream went through, consecutive repeats collapsed."""
    stages: list[str] = []
    for event in stream:
        if event.type == "progress" and event.stage and (not stages or stages[-1] != event.stage):
            stages.append(event.stage)
    return stages


def test_stream_sees_every_stage_in_order_then_the_result(queue: JobQueue) -> None:
    """A stream opened before the job runs yields each stage once, in order, then completed with the result."""
    handle = ImportDocument.perform_later(doc=DOC)
    seen: list[JobEvent] = []
    reader = collect_stream(handle, seen)
    queue.start()
    reader.join(30)
    assert stage_sequence(seen) == list(STAGES)
    assert seen[-1].type == "completed" and seen[-1].result == expected_result(DOC)
    percents = [e.percent for e in seen if e.percent is not None]
    assert percents == sorted(percents) and percents[-1] == 100


def test_stream_replays_stages_it_missed_between_reads(queue: JobQueue) -> None:
    """A stream opened after the job finished still yields all of its stages, in order."""
    stages = [f"step-{i}" for i in range(8)]
    handle = QuickStages.perform_later(stages=stages)
    queue.drain()
    seen = list(handle.stream(timeout=10))
    assert stage_sequence(seen) == stages
    assert (seen[-1].type, seen[-1].result) == ("completed", stages)


def test_async_events_see_every_stage_then_the_result(queue: JobQueue) -> None:
    """async for over handle.events() yields the stages in order and the final result."""
    handle = ImportDocumentAsync.perform_later(doc=DOC)
    queue.start()

    async def consume() -> list[JobEvent]:
        return [event async for event in handle.events(timeout=30)]

    seen = asyncio.run(consume())
    assert stage_sequence(seen) == list(STAGES)
    assert seen[-1].type == "completed" and seen[-1].result == expected_result(DOC)


def test_await_wait_returns_the_result_or_raises(queue: JobQueue, events: EventLog, control: Path) -> None:
    """await handle.wait() returns a completed job's result, raises JobFailed for a failed one and
    ResultTimeout while a job is held."""
    (control / "hold-extract").touch()
    queue.start()
    held = ImportDocument.perform_later(doc=DOC, control=str(control))
    done = ImportDocumentAsync.perform_later(doc=DOC)
    failed = RaisesDiscard.perform_later()

    async def wait_all() -> None:
        assert await done.wait(timeout=20) == expected_result(DOC)
        with pytest.raises(JobFailed):
            await failed.wait(timeout=20)
        with pytest.raises(ResultTimeout):
            await held.wait(timeout=0.3)
        (control / "hold-extract").unlink()
        assert await held.wait(timeout=20) == expected_result(DOC)

    asyncio.run(wait_all())


def test_stream_follows_a_job_through_pause_and_resume(queue: JobQueue, events: EventLog, control: Path) -> None:
    """A stream reports 'paused', keeps waiting, and after resume sees the remaining stages and the result."""
    (control / "hold-transform").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    seen: list[JobEvent] = []
    for event in handle.stream(timeout=30):
        seen.append(event)
        if event.stage == "transform" and "paused" not in [e.type for e in seen]:
            handle.pause()
        if event.type == "paused":
            (control / "hold-transform").unlink()
            handle.resume()
    assert [e.type for e in seen if e.type != "progress"] == ["paused", "completed"]
    assert stage_sequence(seen) == list(STAGES)
    assert seen[-1].result == expected_result(DOC)


def test_stream_until_paused_ends_at_the_pause(queue: JobQueue, events: EventLog, control: Path) -> None:
    """stream(until_paused=True) ends with the 'paused' event."""
    (control / "hold-extract").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage="extract")
    handle.pause()
    seen = list(handle.stream(timeout=15, until_paused=True))
    assert seen[-1].type == "paused"
    handle.cancel()


def test_stream_of_a_failed_job_ends_with_the_error(queue: JobQueue) -> None:
    """A failed job's stream ends with a 'failed' event carrying the last error."""
    handle = RaisesDiscard.perform_later()
    queue.drain()
    final = list(handle.stream(timeout=5))[-1]
    assert final.type == "failed" and final.error is not None and final.error["type"] == "Discard"


# -- push: LISTEN/NOTIFY on PostgreSQL, polling on SQLite --------------------------------------------------


@pytest.fixture
def observer(db_url: str) -> Any:
    """A second queue on the same database, standing in for another process that waits on jobs."""
    other = JobQueue(database_url=db_url, **FAST)
    yield other
    other.close()


def wait_live(watch: Any, expected: bool) -> None:
    """Give the LISTEN connection a moment to come up (PostgreSQL); SQLite watches never go live."""
    deadline = time.monotonic() + 10
    while expected and not watch.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watch.live is expected


def test_completion_is_pushed_to_waiters_in_other_processes(queue: JobQueue, observer: JobQueue) -> None:
    """PostgreSQL: a job's completion wakes a watch held elsewhere at once; SQLite: waiters poll instead."""
    pushed = queue.store.is_postgres
    handle = QuickStages.perform_later(stages=["only"])
    with observer.watch(handle.id) as watch:
        wait_live(watch, pushed)
        queue.drain()
        assert watch.wait(5 if pushed else 0.2) is pushed


def test_progress_is_pushed_to_waiters_in_other_processes(
    queue: JobQueue, observer: JobQueue, events: EventLog, control: Path
) -> None:
    """PostgreSQL: a progress write wakes a watch held elsewhere; SQLite: waiters poll instead."""
    pushed = queue.store.is_postgres
    (control / "hold-transform").touch()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    with observer.watch(handle.id) as watch:
        wait_live(watch, pushed)
        queue.start()
        events.wait_for(handle.id, "progress", stage="transform")
        assert watch.wait(5 if pushed else 0.2) is pushed
    (control / "hold-transform").unlink()
    handle.result(timeout=20)


def test_admin_actions_are_pushed_to_waiters_in_other_processes(queue: JobQueue, observer: JobQueue) -> None:
    """PostgreSQL: pausing a pending job wakes a watch held elsewhere; SQLite: waiters poll instead."""
    pushed = queue.store.is_postgres
    handle = ImportDocument.perform_later(doc=DOC)
    with observer.watch(handle.id) as watch:
        wait_live(watch, pushed)
        assert queue.pause_job(handle.id) == "paused"
        assert watch.wait(5 if pushed else 0.2) is pushed


def test_result_in_another_process_returns_soon_after_completion(
    queue: JobQueue, observer: JobQueue, events: EventLog, control: Path
) -> None:
    """A result() waiting elsewhere returns well within a second of the job completing, on both databases."""
    (control / "hold-load").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", stage="load")
    result: dict[str, float] = {}

    def wait() -> None:
        observer.handle(handle.id).result(timeout=30)
        result["at"] = time.monotonic()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.3)  # let the waiter settle into its slow recheck interval; this is what push must beat
    (control / "hold-load").unlink()
    completed = events.wait_for(handle.id, "completed")
    assert completed
    finished = time.monotonic()
    waiter.join(10)
    assert "at" in result and result["at"] - finished < 0.5


# -- crash: a rescued job resumes from its checkpoint ----------------------------------------------------


def test_job_of_a_killed_worker_resumes_from_its_checkpoint(queue: JobQueue, control: Path) -> None:
    """A worker process killed mid-job: the job is rescued and continues from its last checkpoint."""
    (control / "hold-load").touch()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBKIT_DATABASE_URL": queue.settings.database_url,
        "JOBKIT_HEARTBEAT_INTERVAL": "0.5",
        "JOBKIT_POLL_INTERVAL": "0.2",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.long_jobs"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        handle = ImportDocument.perform_later(doc=DOC, control=str(control))
        for event in handle.stream(timeout=30):
            if event.stage == "load":
                break
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    (control / "hold-load").unlink()
    queue.start()
    assert handle.result(timeout=30) == expected_result(DOC)
    assert ran(control) == ["1 extract", "1 transform", "2 load"]
    assert handle.refresh().crashes == 1

"""Admin actions on jobs and queues, stats and job types, each on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import jobkit
from jobkit import FakeClock, JobQueue
from tests.conftest import FAST
from tests.jobs import AddOne, Flaky, Sleepy
from tests.long_jobs import FailsUntilFixed, ImportDocument, RaisesDiscard, TightProgress
from tests.observe import EventLog

TERMINAL = {"completed", "failed", "cancelled"}


def started_ids(ledger: Path) -> set[int]:
    """Ids of the Sleepy jobs that started, from their ledger."""
    if not ledger.exists():
        return set()
    return {int(line.split()[1]) for line in ledger.read_text().splitlines() if line.startswith("start")}


def hold_running(queue: JobQueue, events: EventLog, control: Path) -> jobkit.JobHandle:
    """A job that is running and stays so until ``control/hold-extract`` is removed."""
    (control / "hold-extract").touch()
    queue.start()
    handle = ImportDocument.perform_later(doc="a b c", control=str(control))
    events.wait_for(handle.id, "progress", stage="extract")
    return handle


# -- cancel -------------------------------------------------------------------------------------------


def test_cancel_a_paused_job(queue: JobQueue) -> None:
    """A paused job is cancelled at once."""
    handle = AddOne.perform_later(n=1)
    handle.pause()
    assert handle.cancel() == "cancelled"
    assert handle.status() == "cancelled"


def test_cancel_a_finished_job_changes_nothing(queue: JobQueue) -> None:
    """cancel() on a completed job reports 'completed' and leaves it be."""
    handle = AddOne.perform_later(n=1)
    queue.drain()
    assert handle.cancel() == "completed"
    assert handle.result(timeout=5) == 2


def test_cancel_an_unknown_job_returns_none(queue: JobQueue) -> None:
    """Admin actions on an id that does not exist say so with None / False."""
    assert queue.cancel_job(999_999) is None
    assert queue.pause_job(999_999) is None
    assert queue.resume_job(999_999) is None
    assert queue.retry_job(999_999) is False
    assert queue.discard_job(999_999) is False
    assert queue.delete_job(999_999) is False


# -- pause --------------------------------------------------------------------------------------------


def test_pause_a_finished_job_reports_its_status(queue: JobQueue) -> None:
    """pause() on a completed job changes nothing and says 'completed'."""
    handle = AddOne.perform_later(n=1)
    queue.drain()
    assert handle.pause() == "completed"


def test_pause_racing_claims_never_runs_a_paused_job(queue: JobQueue, tmp_path: Path) -> None:
    """Pausing jobs while workers claim them: a job reported 'paused' never starts until resumed."""
    ledger = tmp_path / "ledger"
    handles = Sleepy.perform_all_later([{"seconds": 0, "ledger": str(ledger)} for _ in range(60)])
    queue.start()
    replies = {h.id: h.pause() for h in handles}
    paused = {job_id for job_id, reply in replies.items() if reply == "paused"}
    for h in handles:
        if h.id not in paused:
            _settle(h)
    assert not paused & started_ids(ledger)
    assert all(queue.job_status(job_id) == "paused" for job_id in paused)
    for job_id in paused:
        assert queue.resume_job(job_id) == "pending"
    for job_id in paused:
        assert queue.handle(job_id).result(timeout=20) == "slept"


def _settle(handle: jobkit.JobHandle) -> None:
    """Wait until a job is completed or paused (a pause that reached a running job ends either way)."""
    for event in handle.stream(timeout=20, until_paused=True):
        if event.type in ("completed", "paused"):
            return


# -- retry --------------------------------------------------------------------------------------------


def test_retry_a_failed_job_keeps_its_history(queue: JobQueue, control: Path) -> None:
    """Once the cause is fixed, retry() runs a failed job again; its earlier error stays recorded."""
    (control / "broken").touch()
    handle = FailsUntilFixed.perform_later(control=str(control))
    queue.drain()
    assert handle.status() == "failed"
    (control / "broken").unlink()
    assert handle.retry() is True
    info = handle.refresh()
    assert (info.status, info.attempt, info.finished_at) == ("pending", 0, None)
    queue.drain()
    assert handle.result(timeout=5) == "fixed"
    assert [e["type"] for e in handle.refresh().errors] == ["RuntimeError"]


def test_retry_a_cancelled_job(queue: JobQueue) -> None:
    """retry() puts a cancelled job back to pending and it runs."""
    handle = AddOne.perform_later(n=1)
    handle.cancel()
    assert handle.retry() is True
    queue.drain()
    assert handle.result(timeout=5) == 2


@pytest.mark.parametrize("state", ["pending", "paused", "completed"])
def test_retry_refuses_jobs_that_are_not_failed_or_cancelled(queue: JobQueue, state: str) -> None:
    """retry() is for failed and cancelled jobs only."""
    handle = AddOne.perform_later(n=1)
    if state == "paused":
        handle.pause()
    elif state == "completed":
        queue.drain()
    assert handle.retry() is False
    assert handle.status() == state


def test_retry_failed_of_one_type(queue: JobQueue, control: Path) -> None:
    """retry_failed(name=...) puts back every failed job of that type and no other."""
    (control / "broken").touch()
    mine = [FailsUntilFixed.perform_later(control=str(control)) for _ in range(3)]
    other = RaisesDiscard.perform_later()
    queue.drain()
    assert queue.retry_failed(name="long.fails_until_fixed") == 3
    assert {h.status() for h in mine} == {"pending"} and other.status() == "failed"


# -- discard ------------------------------------------------------------------------------------------


def test_discard_a_pending_job(queue: JobQueue) -> None:
    """discard() fails a pending job at once, recording why."""
    handle = AddOne.perform_later(n=1)
    assert queue.discard_job(handle.id, "customer withdrew the request") is True
    info = handle.refresh()
    assert info.status == "failed"
    assert (info.errors[-1]["type"], info.errors[-1]["message"]) == ("Discard", "customer withdrew the request")
    assert queue.run_once() == 0


def test_discard_a_job_waiting_to_retry(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """A job waiting for its retry can be discarded; its earlier errors are kept."""
    handle = Flaky.perform_later(times=10)
    clocked_queue.run_once()
    assert handle.status() == "pending"
    assert clocked_queue.discard_job(handle.id) is True
    assert [e["type"] for e in handle.refresh().errors] == ["RuntimeError", "Discard"]


def test_discard_a_running_job_ends_it_failed(queue: JobQueue, events: EventLog, control: Path) -> None:
    """discard() on a running job asks its worker to end it: it ends failed, with a Discard entry."""
    handle = hold_running(queue, events, control)
    assert queue.discard_job(handle.id) is True
    with pytest.raises(jobkit.JobFailed):
        handle.result(timeout=20)
    assert handle.refresh().errors[-1]["type"] == "Discard"


def test_discard_racing_claims_fails_exactly_the_jobs_it_reports(queue: JobQueue, tmp_path: Path) -> None:
    """Discarding while workers claim: every job reported discarded fails with a Discard entry, unless it was
    already running and completed before its worker saw the request; a job never reported discarded completes."""
    ledger = tmp_path / "ledger"
    handles = Sleepy.perform_all_later([{"seconds": 0, "ledger": str(ledger)} for _ in range(60)])
    queue.start()
    discarded = {h.id for h in handles if queue.discard_job(h.id)}
    final = {h.id: _final_status(h) for h in handles}
    ran = started_ids(ledger)
    failed = {job_id for job_id, status in final.items() if status == "failed"}
    completed = {job_id for job_id, status in final.items() if status == "completed"}
    assert failed | completed == set(final)
    assert failed <= discarded
    assert completed <= ran
    assert discarded & completed <= ran  # a discard that did not end the job found it running
    assert all(queue.handle(job_id).refresh().errors[-1]["type"] == "Discard" for job_id in failed)


def _final_status(handle: jobkit.JobHandle) -> str:
    try:
        handle.result(timeout=20)
    except jobkit.JobFailed:
        pass
    return handle.status()


# -- delete and clear ---------------------------------------------------------------------------------


def test_delete_refuses_jobs_that_have_not_ended(queue: JobQueue, events: EventLog, control: Path) -> None:
    """delete() refuses pending, paused and running jobs and leaves them as they were."""
    pending = AddOne.perform_in(3600, n=1)
    paused = AddOne.perform_later(n=2)
    paused.pause()
    running = hold_running(queue, events, control)
    for handle, status in ((pending, "pending"), (paused, "paused"), (running, "running")):
        assert queue.delete_job(handle.id) is False
        assert handle.status() == status
    (control / "hold-extract").unlink()
    running.result(timeout=20)


def test_delete_a_finished_job(queue: JobQueue) -> None:
    """delete() removes a completed job; its handle then reports JobNotFound."""
    handle = AddOne.perform_later(n=1)
    queue.drain()
    assert queue.delete_job(handle.id) is True
    with pytest.raises(jobkit.JobNotFound):
        handle.status()


def test_clear_completed_older_than(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """clear_completed(older_than=...) deletes only jobs that finished before then."""
    old = AddOne.perform_later(n=1)
    clocked_queue.drain()
    clock.advance(timedelta(hours=2))
    recent = AddOne.perform_later(n=2)
    clocked_queue.drain()
    assert clocked_queue.clear_completed(older_than=timedelta(hours=1)) == 1
    assert clocked_queue.job_info(old.id) is None and recent.status() == "completed"


def test_clear_failed_by_type_and_queue(queue: JobQueue, control: Path) -> None:
    """clear_failed(name=..., queue=...) deletes only the failed jobs that match."""
    (control / "broken").touch()
    imports = FailsUntilFixed.perform_later(control=str(control))
    elsewhere = FailsUntilFixed.set(queue="other").perform_later(control=str(control))
    discards = RaisesDiscard.perform_later()
    done = AddOne.perform_later(n=1)
    queue.drain()
    assert queue.clear_failed(name="long.fails_until_fixed", queue="imports") == 1
    assert queue.job_info(imports.id) is None
    assert {elsewhere.status(), discards.status(), done.status()} == {"failed", "completed"}


def test_clear_completed_by_type_and_queue(queue: JobQueue) -> None:
    """clear_completed(name=..., queue=...) deletes only completed jobs of that type in that queue."""
    match = AddOne.perform_later(n=1)
    other_queue = AddOne.set(queue="other").perform_later(n=2)
    other_type = Sleepy.perform_later(seconds=0)
    not_finished = AddOne.perform_in(3600, n=3)
    queue.drain()
    assert queue.clear_completed(name="tests.add_one", queue="default") == 1
    assert queue.job_info(match.id) is None
    assert (other_queue.status(), other_type.status(), not_finished.status()) == ("completed", "completed", "pending")
    assert queue.clear_completed() == 2


def test_retry_failed_of_one_queue(queue: JobQueue, control: Path) -> None:
    """retry_failed(queue=...) puts back the failed jobs of that queue only."""
    (control / "broken").touch()
    imports = FailsUntilFixed.perform_later(control=str(control))
    elsewhere = FailsUntilFixed.set(queue="other").perform_later(control=str(control))
    queue.drain()
    (control / "broken").unlink()
    assert queue.retry_failed(queue="imports") == 1
    queue.drain()
    assert (imports.result(timeout=5), elsewhere.status()) == ("fixed", "failed")


# -- queues -------------------------------------------------------------------------------------------


def test_paused_queue_is_not_claimed_and_stays_paused_for_a_new_queue_instance(queue: JobQueue, db_url: str) -> None:
    """A queue pause is stored: a fresh JobQueue (a restart) sees it and does not claim from that queue."""
    queue.pause_queue("imports")
    restarted = JobQueue(database_url=db_url, **FAST)
    jobkit.JobQueue.set_instance(restarted)
    try:
        held = FailsUntilFixed.perform_later(control="/nonexistent")
        free = AddOne.perform_later(n=1)
        assert restarted.paused_queues() == ["imports"]
        assert restarted.drain() == 1
        assert (held.status(), free.status()) == ("pending", "completed")
        assert restarted.resume_queue("imports") is True
        assert restarted.drain() == 1
        assert held.result(timeout=5) == "fixed"
    finally:
        restarted.close()
        jobkit.JobQueue.set_instance(queue)


def test_pausing_a_queue_twice_and_resuming_an_unpaused_queue(queue: JobQueue) -> None:
    """pause_queue is idempotent; resume_queue reports whether the queue was paused."""
    queue.pause_queue("imports")
    queue.pause_queue("imports")
    assert queue.paused_queues() == ["imports"]
    assert queue.resume_queue("imports") is True
    assert queue.resume_queue("imports") is False


def test_running_worker_stops_claiming_a_queue_paused_elsewhere(queue: JobQueue, db_url: str, control: Path) -> None:
    """A queue paused from another process stops a running worker's claims; resuming lets them through."""
    queue.start()
    admin = JobQueue(database_url=db_url, **FAST)
    try:
        admin.pause_queue("imports")
        held = FailsUntilFixed.perform_later(control=str(control))
        assert AddOne.perform_later(n=1).result(timeout=10) == 2
        assert held.status() == "pending"
        admin.resume_queue("imports")
        assert held.result(timeout=10) == "fixed"
    finally:
        admin.close()


# -- stats and job types ------------------------------------------------------------------------------


def test_stats_counts_by_status_queue_and_type(clocked_queue: JobQueue, clock: FakeClock, control: Path) -> None:
    """stats() counts jobs by status, queue and type, and ages the oldest due pending job."""
    (control / "broken").touch()
    AddOne.perform_later(n=1)
    clocked_queue.drain()
    FailsUntilFixed.perform_later(control=str(control))
    clocked_queue.drain()
    AddOne.perform_later(n=2)
    AddOne.perform_in(timedelta(hours=1), n=3)
    AddOne.perform_later(n=4).pause()
    clock.advance(30)
    stats = clocked_queue.stats()
    assert stats["by_status"] == {"completed": 1, "failed": 1, "pending": 2, "paused": 1}
    assert stats["by_queue"] == {"default": {"completed": 1, "pending": 2, "paused": 1}, "imports": {"failed": 1}}
    assert stats["by_type"]["tests.add_one"] == {"completed": 1, "pending": 2, "paused": 1}
    assert stats["by_type"]["long.fails_until_fixed"] == {"failed": 1}
    assert stats["running"] == 0
    assert stats["oldest_pending_age"] == pytest.approx(30, abs=0.01)


def test_stats_counts_running_jobs(queue: JobQueue, events: EventLog, control: Path) -> None:
    """A running job shows in stats()['running']."""
    handle = hold_running(queue, events, control)
    assert queue.stats()["running"] == 1
    (control / "hold-extract").unlink()
    handle.result(timeout=20)
    assert queue.stats()["running"] == 0


def test_job_types_lists_registered_types_with_their_options(queue: JobQueue) -> None:
    """job_types() describes every registered type: schema, retries, backoff, timeout, queue, filters, result."""
    types = queue.job_types()
    described = types["long.fails_until_fixed"]
    assert described.pop("args_schema")["title"] == "FixArgs"
    assert described == {
        "name": "long.fails_until_fixed",
        "schema": "FixArgs",
        "max_retries": 0,
        "backoff": "exponential",
        "timeout": None,
        "queue": "imports",
        "priority": 0,
        "retry_on": [],
        "discard_on": [],
        "kind": "job",
        "result": "str",
        "isolation": None,  # the worker's pool decides
    }
    assert types["long.retry_on"]["retry_on"] == ["TransientError"]
    assert types["long.discard_on"]["discard_on"] == ["Unrecoverable"]
    assert TightProgress.job_type().name in types and "tests.sleepy" in types


def test_admin_actions_emit_events(queue: JobQueue, events: EventLog) -> None:
    """pause, resume, cancel, retry, discard and delete each emit an event to subscribers."""
    handle = AddOne.perform_later(n=1)
    handle.pause()
    handle.resume()
    handle.cancel()
    handle.retry()
    queue.discard_job(handle.id)
    queue.delete_job(handle.id)
    events.wait_for(handle.id, "deleted")
    kinds = [e["type"] for e in events.of(handle.id)]
    assert kinds == ["enqueued", "paused", "resumed", "cancelled", "retried", "failed", "deleted"]


def test_admin_actions_from_threads_leave_every_job_consistent(queue: JobQueue) -> None:
    """Cancel, pause, resume and discard fired at the same jobs from several threads never break a row."""
    handles = AddOne.perform_all_later([{"n": i} for i in range(30)])
    queue.start()
    actions = [queue.cancel_job, queue.pause_job, queue.resume_job, queue.discard_job]
    threads = [threading.Thread(target=lambda act=act: [act(h.id) for h in handles], daemon=True) for act in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # resume what ended up paused until every job has ended
        statuses = [(h, h.status()) for h in handles]
        if all(status in TERMINAL for _, status in statuses):
            break
        for h, status in statuses:
            if status == "paused":
                h.resume()
        time.sleep(0.05)
    for h in handles:
        info = h.refresh()
        assert info.status in TERMINAL and info.finished_at is not None and info.cancel_requested is None
        if info.status == "completed":
            assert info.result == info.args["n"] + 1
        if info.status == "failed":
            assert info.errors[-1]["type"] == "Discard"


def test_a_stored_request_that_names_nothing_is_logged_and_never_taken_for_a_cancel(
    queue: JobQueue, events: EventLog, control: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A running job whose cancel_requested holds an unknown word keeps running and completes; the word is logged."""
    handle = hold_running(queue, events, control)
    with queue.store.write() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.text("UPDATE jobkit_jobs SET cancel_requested = 'stop-it' WHERE id = :id"), {"id": handle.id})
    caplog.set_level(logging.ERROR, logger="jobkit.worker")
    queue.worker.lease.reconcile_once()
    assert "the request is ignored" in caplog.text
    assert handle.status() == "running"
    (control / "hold-extract").unlink()
    handle.result(timeout=20)
    assert handle.status() == "completed"

"""Running jobs: results, retries, Discard, Snooze, timeouts, cancel and malformed rows."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

import jobkit
from jobkit import FakeClock, JobCancelled, JobFailed, JobQueue
from tests import jobs
from tests.conftest import FAST
from tests.jobs import (
    AddOne,
    AsyncDouble,
    AsyncWithTimeout,
    Discards,
    Flaky,
    ShortBackoff,
    Sleepy,
    SlowWithTimeout,
    Snoozes,
)


class Events:
    """Records the queue's events from the moment it is created; tests wait on them, not on sleeps."""

    def __init__(self, queue: JobQueue) -> None:
        self.seen: list[dict[str, object]] = []
        self.changed = threading.Condition()
        self.unsubscribe = queue.subscribe(self._record)

    def _record(self, event: dict[str, object]) -> None:
        with self.changed:
            self.seen.append(event)
            self.changed.notify_all()

    def wait(self, job_id: int, kinds: set[str], timeout: float = 10) -> dict[str, object]:
        """Block until an event of one of ``kinds`` for ``job_id`` has been seen."""

        def found() -> dict[str, object] | None:
            return next((e for e in self.seen if e.get("job_id") == job_id and e.get("type") in kinds), None)

        with self.changed:
            assert self.changed.wait_for(lambda: found() is not None, timeout), f"no {kinds} event for job {job_id}"
            event = found()
        assert event is not None
        return event


def test_result_returns_the_value(queue: JobQueue) -> None:
    """A sync job's return value comes back through the handle."""
    handle = AddOne.perform_later(n=1)
    assert queue.run_once() == 1
    assert handle.result(timeout=5) == 2
    assert handle.status() == "completed"


def test_async_job_runs_on_the_worker(queue: JobQueue) -> None:
    """async def perform runs on the worker's event loop."""
    queue.start()
    assert AsyncDouble.perform_later(n=21).result(timeout=10) == 42


def test_retries_follow_backoff_and_end_failed_with_all_errors(queue: JobQueue) -> None:
    """max_retries=3: four attempts, four errors recorded, then failed."""
    handle = Flaky.perform_later(times=100)
    assert queue.drain() == 4
    with pytest.raises(JobFailed) as failure:
        handle.result(timeout=5)
    errors = failure.value.errors
    assert [e["attempt"] for e in errors] == [1, 2, 3, 4]
    assert all(e["type"] == "RuntimeError" and "Traceback" in e["traceback"] for e in errors)


def test_transient_error_then_success(queue: JobQueue) -> None:
    """A job that fails twice then succeeds completes with its error history kept."""
    handle = Flaky.perform_later(times=2)
    queue.drain()
    assert handle.result(timeout=5) == "ok after 3"
    assert len(handle.refresh().errors) == 2


def test_retry_runs_at_its_backoff_not_at_the_next_poll(db_url: str) -> None:
    """The worker wakes for its own retry's run time, even with a poll interval far longer than the backoff."""
    q = jobkit.configure(database_url=db_url, concurrency=2, **{**FAST, "poll_interval": 60.0})
    try:
        q.start()
        time.sleep(0.3)  # past the start-up claims, so only a wake-up can start the retry
        handle = ShortBackoff.perform_later(times=1)
        assert handle.result(timeout=10) == "ok after 2"
        errors = handle.refresh().errors
        retried_after = handle.refresh().finished_at.timestamp() - errors[0]["at"]
        assert 0.25 <= retried_after < 5.0
    finally:
        q.close()
        JobQueue.set_instance(None)


def test_retry_waits_for_backoff(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """A failed attempt is retried only once its backoff (here 10 s x attempt) has passed."""
    handle = jobs.SlowBackoff.perform_later(times=2)
    assert clocked_queue.run_once() == 1
    info = handle.refresh()
    assert (info.status, info.attempt) == ("pending", 1)
    assert info.run_at.timestamp() == pytest.approx(clock.now() + 10)
    clock.advance(9)
    assert clocked_queue.run_once() == 0
    clock.advance(2)
    assert clocked_queue.run_once() == 1
    assert handle.refresh().run_at.timestamp() == pytest.approx(clock.now() + 20)
    clock.advance(21)
    assert clocked_queue.run_once() == 1
    assert handle.result(timeout=5) == "ok after 3"


def test_discard_fails_at_once_without_retry(queue: JobQueue) -> None:
    """Discard is permanent: one attempt, failed, retries untouched."""
    handle = Discards.perform_later()
    assert queue.drain() == 1
    info = handle.refresh()
    assert (info.status, info.attempt, info.errors[0]["type"]) == ("failed", 1, "Discard")


def test_snooze_runs_again_without_spending_an_attempt(queue: JobQueue) -> None:
    """Snooze puts the job back; the next run is still attempt 1."""
    handle = Snoozes.perform_later(times=2, key=f"snooze-{queue.store.url}")
    queue.drain()
    assert handle.result(timeout=5) == 1
    assert handle.refresh().errors == []


def test_timeout_fires_the_token_and_is_retried(queue: JobQueue) -> None:
    """A sync job past its timeout sees its token fire; JobTimeout is recorded and retried."""
    queue.start()
    handle = SlowWithTimeout.perform_later(seconds=30)
    with pytest.raises(JobFailed) as failure:
        handle.result(timeout=15)
    assert [e["type"] for e in failure.value.errors] == ["JobTimeout", "JobTimeout"]


def test_async_timeout_cancels_the_task(queue: JobQueue) -> None:
    """An async job past its timeout is cancelled outright."""
    queue.start()
    with pytest.raises(JobFailed) as failure:
        AsyncWithTimeout.perform_later(seconds=30).result(timeout=15)
    assert failure.value.error_type == "JobTimeout"


def test_cancel_pending_job(queue: JobQueue) -> None:
    """cancel() on a pending job cancels it at once; result() raises JobCancelled."""
    handle = AddOne.perform_later(n=1)
    assert handle.cancel() == "cancelled"
    assert queue.run_once() == 0
    with pytest.raises(JobCancelled):
        handle.result(timeout=5)


def test_cancel_running_job_fires_its_token(queue: JobQueue) -> None:
    """cancel() on a running job reaches its token through the worker."""
    events = Events(queue)
    queue.start()
    handle = Sleepy.perform_later(seconds=60)
    events.wait(handle.id, {"started"})
    assert handle.cancel() == "cancelling"
    with pytest.raises(JobCancelled):
        handle.result(timeout=10)


def test_concurrency_never_exceeds_the_limit(queue: JobQueue) -> None:
    """Running 20 sleeping jobs at concurrency 5 peaks at exactly 5."""
    jobs.concurrency["peak"] = 0
    queue.start()
    handles = Sleepy.perform_all_later([{"seconds": 0.1} for _ in range(20)])
    for h in handles:
        h.result(timeout=20)
    assert jobs.concurrency["peak"] == 5
    assert queue.worker.peak_running == 5


def test_two_workers_never_run_the_same_job(db_url: str, tmp_path: jobs.Any) -> None:
    """Two queues (two workers) on one database complete 300 jobs, each exactly once."""
    import jobkit
    from tests.conftest import FAST

    ledger = tmp_path / "ledger.txt"
    first = jobkit.JobQueue(database_url=db_url, concurrency=4, **FAST)
    second = jobkit.JobQueue(database_url=db_url, concurrency=4, **FAST)
    jobkit.JobQueue.set_instance(first)
    try:
        handles = Sleepy.perform_all_later([{"seconds": 0, "ledger": str(ledger)} for _ in range(300)])
        first.start()
        second.start()
        for h in handles:
            h.result(timeout=60)
    finally:
        first.close()
        second.close()
        jobkit.JobQueue.set_instance(None)
    starts = [line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 300 and len(set(starts)) == 300


def test_unknown_job_name_does_not_stop_the_worker(queue: JobQueue) -> None:
    """A row whose type no worker here knows is left alone; other jobs keep flowing."""
    with queue.store.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobkit_jobs (name, queue, priority, status, args, run_at, created_at, max_retries, "
                "attempt, crashes, lease) VALUES ('nobody.knows', 'default', -100, 'pending', '{}', 0, 0, 0, 0, 0, 0)"
            )
        )
    queue.start()
    assert AddOne.perform_later(n=1).result(timeout=10) == 2
    assert queue.jobs(name="nobody.knows")[0].status == "pending"


def test_malformed_row_is_failed_with_a_clear_error(queue: JobQueue) -> None:
    """Stored arguments that no longer fit the schema fail the job at once, never retried forever."""
    handle = Flaky.perform_later(times=0)
    with queue.store.write() as conn:
        conn.execute(sa.text('UPDATE jobkit_jobs SET args = \'{"times": "many"}\' WHERE id = :id'), {"id": handle.id})
    bad_json = Flaky.perform_later(times=0)
    with queue.store.write() as conn:
        conn.execute(sa.text("UPDATE jobkit_jobs SET args = 'not json{' WHERE id = :id"), {"id": bad_json.id})
    queue.start()
    for h in (handle, bad_json):
        with pytest.raises(JobFailed, match="no longer fit"):
            h.result(timeout=10)
        assert h.refresh().attempt == 1
    assert AddOne.perform_later(n=1).result(timeout=10) == 2


def test_stop_grace_returns_unfinished_jobs_to_pending(queue: JobQueue) -> None:
    """stop(grace) cancels what did not finish in time and gives it back without spending an attempt."""
    events = Events(queue)
    queue.start()
    handle = Sleepy.perform_later(seconds=60)
    events.wait(handle.id, {"started"})
    queue.stop(grace=0.2)
    info = handle.refresh()
    assert (info.status, info.attempt, info.worker_id) == ("pending", 0, None)


def test_prune_removes_only_old_terminal_rows(clocked_queue: JobQueue, clock: jobs.Any) -> None:
    """Pruning deletes terminal rows past retention and keeps recent and pending ones."""
    old = AddOne.perform_later(n=1)
    clocked_queue.run_once()
    clock.advance(clocked_queue.settings.retention + 10)
    recent = AddOne.perform_later(n=2)
    clocked_queue.run_once()
    pending = AddOne.perform_in(3600, n=3)
    assert clocked_queue.worker.prune_once() == 1
    assert clocked_queue.job_info(old.id) is None
    assert recent.status() == "completed" and pending.status() == "pending"

"""The wedge matrix: a job that misbehaves ends its own attempt, never a slot or a worker thread.

Each case runs at concurrency 2 with two misbehaving jobs (which used to leave zero slots), then a
batch of normal jobs that must still run two at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

import jobkit
from jobkit import JobCancelled, JobFailed, JobQueue
from tests import jobs, wedge_jobs
from tests.conftest import FAST
from tests.jobs import Sleepy
from tests.wedge_jobs import (
    DeepResult,
    ExitsAsync,
    ExitsSync,
    IgnoresCancel,
    IgnoresToken,
    InterruptsAsync,
    InterruptsSync,
    RaisesUnprintable,
)

KILL_GRACE = 0.5


@pytest.fixture
def wedge_queue(db_url: str) -> Iterator[JobQueue]:
    """A two-slot worker with a short kill_grace, running in this process."""
    q = jobkit.configure(database_url=db_url, concurrency=2, kill_grace=KILL_GRACE, max_stuck_threads=4, **FAST)
    q.start()
    try:
        yield q
    finally:
        q.close()
        JobQueue.set_instance(None)


def assert_full_concurrency(queue: JobQueue) -> None:
    """Four 0.4 s jobs run two at a time: both slots are there."""
    with jobs._lock:
        jobs.concurrency["peak"] = 0
    handles = Sleepy.perform_all_later([{"seconds": 0.4}] * 4)
    assert [h.result(timeout=20) for h in handles] == ["slept"] * 4
    assert jobs.concurrency["peak"] == 2
    assert queue.worker.running_count == 0


CASES = [
    (ExitsSync, "SystemExit"),
    (ExitsAsync, "SystemExit"),
    (InterruptsSync, "KeyboardInterrupt"),
    (InterruptsAsync, "KeyboardInterrupt"),
    (RaisesUnprintable, "Unprintable"),
]


@pytest.mark.parametrize(("job_class", "error_type"), CASES, ids=[c[1] + "-" + c[0].__name__ for c in CASES])
def test_a_raising_job_is_retried_then_failed_and_frees_its_slot(
    wedge_queue: JobQueue, job_class: type[jobkit.BaseJob[wedge_jobs.WedgeArgs]], error_type: str
) -> None:
    """SystemExit, KeyboardInterrupt (sync and async) and an unprintable exception follow the retry policy."""
    handles = [job_class.perform_later() for _ in range(2)]
    for handle in handles:
        with pytest.raises(JobFailed):
            handle.result(timeout=15)
        info = handle.refresh()
        assert [e["type"] for e in info.errors] == [error_type, error_type]  # max_retries=1: two attempts
        assert all(e["traceback"] for e in info.errors)
    if job_class is RaisesUnprintable:
        assert "str() of the Unprintable failed" in info.errors[-1]["message"]
    assert_full_concurrency(wedge_queue)


def test_a_result_too_deep_to_encode_fails_the_job_not_the_thread(wedge_queue: JobQueue) -> None:
    """A result nested 100,000 deep cannot be stored: the job fails at once (no retry), the slot is free."""
    handles = [DeepResult.perform_later() for _ in range(2)]
    for handle in handles:
        with pytest.raises(JobFailed, match="result cannot be stored"):
            handle.result(timeout=15)
        assert len(handle.refresh().errors) == 1
    assert_full_concurrency(wedge_queue)


def test_a_sync_job_ignoring_its_timeout_is_recorded_and_its_thread_replaced(wedge_queue: JobQueue) -> None:
    """Past timeout + kill_grace the attempt is a JobTimeout at once; the slots go on while the thread sleeps."""
    wedge_jobs.returned.clear()
    started = time.monotonic()
    handles = [IgnoresToken.perform_later(seconds=6) for _ in range(2)]
    for handle in handles:
        with pytest.raises(JobFailed) as failed:
            handle.result(timeout=5)
        assert failed.value.error_type == "JobTimeout"
        assert "kill_grace" in failed.value.errors[-1]["message"]
    assert time.monotonic() - started < 4, "the timeout was recorded only when the job returned"
    assert wedge_queue.worker.stuck_threads == 2
    assert_full_concurrency(wedge_queue)
    assert not wedge_jobs.returned.is_set(), "the stuck jobs returned before the check: the test proved nothing"
    # When the abandoned jobs finally return, their late results are refused and their threads exit.
    assert wedge_jobs.returned.wait(10)
    deadline = time.monotonic() + 5
    while wedge_queue.worker.stuck_threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wedge_queue.worker.stuck_threads == 0
    assert [h.status() for h in handles] == ["failed", "failed"]


def test_cancelling_a_job_that_ignores_its_token_ends_it_after_kill_grace(wedge_queue: JobQueue) -> None:
    """cancel() on a job that never looks at its token: cancelled within kill_grace, slot freed."""
    handle = IgnoresCancel.perform_later(seconds=8)
    deadline = time.monotonic() + 10
    while handle.status() != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    asked = time.monotonic()
    assert handle.cancel() == "cancelling"
    with pytest.raises(JobCancelled):
        handle.result(timeout=5)
    assert time.monotonic() - asked < KILL_GRACE + 2
    assert_full_concurrency(wedge_queue)


def test_too_many_stuck_threads_make_the_worker_stop_claiming(db_url: str) -> None:
    """Past max_stuck_threads the worker sets its fatal flag (exit code 4) and claims nothing more."""
    q = jobkit.configure(database_url=db_url, concurrency=2, kill_grace=0.2, max_stuck_threads=0, **FAST)
    try:
        q.start()
        stuck = IgnoresToken.perform_later(seconds=5)
        with pytest.raises(JobFailed):
            stuck.result(timeout=5)
        assert q.worker.fatal.wait(5)
        assert q.worker.exit_code == 4
        assert "max_stuck_threads=0" in q.worker.fatal_reason
        later = Sleepy.perform_later(seconds=0)
        time.sleep(1.0)  # several poll intervals: a claiming worker would have taken it
        assert later.status() == "pending"
    finally:
        q.close()
        JobQueue.set_instance(None)


def test_a_job_outliving_the_shutdown_grace_counts_as_a_crash(db_url: str) -> None:
    """stop() hands back a job that ignored its token as a crash (attempt kept), so max_crashes ends a wedging job."""
    job_id: int | None = None
    for round_, expected in ((1, "pending"), (2, "failed")):
        q = jobkit.configure(database_url=db_url, concurrency=1, max_crashes=2, **FAST)
        try:
            q.start()
            handle = IgnoresCancel.perform_later(seconds=4) if job_id is None else q.handle(job_id)
            job_id = handle.id
            deadline = time.monotonic() + 10
            while handle.status() != "running":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            q.stop(grace=0.2)
            info = handle.refresh()
            assert info.status == expected
            assert info.crashes == round_
            assert info.attempt == (0 if expected == "pending" else 1)  # the overrun gives the attempt back
            assert info.errors[-1]["type"] == "WorkerLost"
            assert "shutdown grace" in info.errors[-1]["message"]
        finally:
            q.close()
            JobQueue.set_instance(None)


def test_each_job_logs_its_start_and_end(queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    """INFO lines name id, type, queue, attempt and worker; a retry is a WARNING, a final failure an ERROR."""
    from tests.jobs import AddOne, Flaky

    caplog.set_level(logging.INFO, logger="jobkit.jobs")
    ok = AddOne.perform_later(n=1)
    bad = Flaky.perform_later(times=5)
    while queue.run_once():
        pass
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "jobkit.jobs"]
    worker = queue.worker.id
    assert (logging.INFO, f"job {ok.id} tests.add_one started (queue default, attempt 1/1, worker {worker})") in lines
    ends = [m for lvl, m in lines if m.startswith(f"job {ok.id} tests.add_one completed")]
    assert len(ends) == 1 and " after " in ends[0]
    retries = [m for lvl, m in lines if lvl == logging.WARNING and m.startswith(f"job {bad.id} tests.flaky retrying")]
    assert len(retries) == 3 and "RuntimeError: boom on attempt 1" in retries[0]
    final = [m for lvl, m in lines if lvl == logging.ERROR and m.startswith(f"job {bad.id} tests.flaky failed")]
    assert len(final) == 1 and "Traceback" in final[0]


def test_job_logger_records_carry_id_name_and_attempt(queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    """A job's own logger tags every record with the job's id, name and attempt."""
    from tests.jobs import Logs

    caplog.set_level(logging.INFO, logger="jobkit.job")
    handle = Logs.perform_later()
    queue.run_once()
    assert handle.result(timeout=5) == "logged"
    record = next(r for r in caplog.records if r.name == "jobkit.job.tests.logs")
    assert (record.job_id, record.job_name, record.attempt) == (handle.id, "tests.logs", 1)  # type: ignore[attr-defined]
    assert f"job {handle.id}" in record.getMessage()


@pytest.mark.parametrize("first", [None, "cancel"], ids=["kill", "cancel-then-kill"])
def test_kill_ends_a_job_that_ignores_its_token_at_once(wedge_queue: JobQueue, first: str | None) -> None:
    """kill() does not wait for kill_grace, also after a cancel the job ignored; the slot is free again."""
    handle = IgnoresCancel.perform_later(seconds=8)
    deadline = time.monotonic() + 10
    while handle.status() != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    if first == "cancel":
        assert handle.cancel() == "cancelling"
        time.sleep(0.2)  # the cancel reaches the job's token, which it ignores
    asked = time.monotonic()
    assert handle.kill() == "killing"
    with pytest.raises(JobCancelled):
        handle.result(timeout=5)
    assert time.monotonic() - asked < KILL_GRACE, "kill waited for kill_grace"
    assert_full_concurrency(wedge_queue)

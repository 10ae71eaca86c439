"""Damaged rows and unwritable outcomes stay with their own job: the worker's threads carry on."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from jobkit import JobFailed, JobQueue
from jobkit._runtime.completer import Completer, Finished
from jobkit._runtime.outcome import Completed, Failed
from tests.jobs import AddOne, Flaky
from tests.wedge_jobs import NanBackoff, NanSnooze


def damage(queue: JobQueue, job_id: int, column: str, value: Any) -> None:
    """Overwrite one column of one row, as a bad migration or a hand edit would."""
    with queue.store.write() as conn:
        conn.execute(sa.text(f"UPDATE jobkit_jobs SET {column} = :v WHERE id = :id"), {"v": value, "id": job_id})


def nested(levels: int) -> str:
    return '{"n": ' + "[" * levels + "]" * levels + "}"


def test_damaged_rows_fail_alone_while_other_jobs_complete(queue: JobQueue) -> None:
    """Arguments too deep to decode, invalid JSON and a damaged error history each end their own job."""
    too_deep = AddOne.perform_later(n=1)
    damage(queue, too_deep.id, "args", nested(100_000))
    not_json = AddOne.perform_later(n=1)
    damage(queue, not_json.id, "args", '{"n": 1')
    bad_history = Flaky.perform_later(times=100)
    damage(queue, bad_history.id, "errors", "{this is not json")
    queue.start()
    for handle in (too_deep, not_json):
        with pytest.raises(JobFailed, match="stored arguments"):
            handle.result(timeout=15)
        assert handle.refresh().attempt == 1
    with pytest.raises(JobFailed, match="boom on attempt 4"):
        bad_history.result(timeout=15)
    history = bad_history.refresh().errors
    assert history[0]["type"] == "DamagedHistory" and history[0]["raw"] == "{this is not json"
    assert [e["type"] for e in history[1:]] == ["RuntimeError"] * 4
    handles = AddOne.perform_all_later([{"n": i} for i in range(20)])
    assert [h.result(timeout=15) for h in handles] == [i + 1 for i in range(20)]
    assert queue.worker.running_count == 0


def test_a_backoff_answering_nan_fails_the_job_with_the_reason(queue: JobQueue) -> None:
    """A custom backoff returning NaN cannot park or wedge the job: it fails, naming the delay."""
    queue.start()
    handle = NanBackoff.perform_later()
    with pytest.raises(JobFailed, match="backoff for attempt 1 returned NaN"):
        handle.result(timeout=10)
    assert AddOne.perform_later(n=1).result(timeout=10) == 2


def test_snooze_nan_ends_failed_not_running(queue: JobQueue) -> None:
    """Snooze(nan) used to block the completer on SQLite (NOT NULL run_at): the job now ends failed."""
    queue.start()
    handle = NanSnooze.perform_later()
    with pytest.raises(JobFailed):
        handle.result(timeout=10)
    assert AddOne.perform_later(n=1).result(timeout=10) == 2


def test_a_permanently_refused_outcome_fails_only_its_job(queue: JobQueue) -> None:
    """A batch with one outcome that cannot be written: the others land, the bad one fails with the reason."""
    good, bad = AddOne.perform_later(n=1), AddOne.perform_later(n=2)
    claimed = {
        j.id: j
        for j in queue.store.claim(
            worker="w-test", limit=2, names=["tests.add_one"], queues=None, now=queue.clock.now()
        )
    }
    events: list[dict[str, Any]] = []
    seen = threading.Lock()

    def record(event: dict[str, Any]) -> None:
        with seen:
            events.append(event)

    completer = Completer(queue.store, queue.clock, record, flush=0.05)
    completer.start()
    try:
        unwritable = Failed({"type": "Odd", "message": object()}, retryable=True)  # not JSON: its write fails
        completer.submit(Finished(claimed[good.id], Completed(json.dumps(2), 2), lambda attempt: 0.0))
        completer.submit(Finished(claimed[bad.id], unwritable, lambda attempt: 0.0))
        assert completer.wait_idle(10)
    finally:
        completer.stop()
    assert good.result(timeout=5) == 2
    with pytest.raises(JobFailed, match="could not be stored"):
        bad.result(timeout=5)
    assert {(e["job_id"], e["type"]) for e in events} == {(good.id, "completed"), (bad.id, "failed")}

"""The operator's word is final: a cancel, kill, discard or pause request survives the attempt's end.

Straight on the store, on SQLite and PostgreSQL: a job is claimed, the operator asks for something
while it runs, then its attempt ends in a retry, snooze, release, pause or rescue. The write must
honour the request in the same statement (cancelled, failed with a Discard entry, or paused) and
report the status it left, so the worker emits the right event.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

import jobkit
from jobkit import JobQueue
from jobkit._runtime.maintenance import rescue
from jobkit._store import NewJob, Store, Transition
from jobkit._store.admin import REQUEST_STATES
from tests.jobs import AddOne

NAME = "tests.operator_probe"
ERROR = json.dumps([{"attempt": 1, "type": "Boom", "message": "x", "traceback": None, "at": 0.0}])

#: The attempt's end, as the worker writes it.
ENDS: dict[str, dict[str, Any]] = {
    "retry": {"delay": 30.0, "errors": ERROR},
    "snooze": {"delay": 60.0},
    "release": {"delay": 0.0},
    "pause": {},
    "cancel": {"errors": None},
}

#: (request, end kind) -> the status the write must leave.
EXPECTED = {
    ("cancel", "retry"): "cancelled",
    ("cancel", "snooze"): "cancelled",
    ("cancel", "release"): "cancelled",
    ("cancel", "pause"): "cancelled",
    ("kill", "retry"): "cancelled",
    ("kill", "snooze"): "cancelled",
    ("kill", "release"): "cancelled",
    ("kill", "pause"): "cancelled",
    ("discard", "retry"): "failed",
    ("discard", "snooze"): "failed",
    ("discard", "release"): "failed",
    ("discard", "pause"): "failed",
    ("discard", "cancel"): "failed",
    ("pause", "retry"): "paused",
    ("pause", "snooze"): "paused",
    ("pause", "release"): "paused",
}


def running_job(store: Store, worker: str = "worker-a") -> tuple[int, int]:
    """Enqueue and claim one probe job; returns (id, lease)."""
    now = store.now()
    [job_id] = store.enqueue([NewJob(NAME, "{}", "default", 0, now, 3)], now=now)
    [claimed] = store.claim(worker=worker, limit=1, names=[NAME], queues=None, now=now)
    assert claimed.id == job_id
    return job_id, claimed.lease


def request(store: Store, job_id: int, what: str) -> str | None:
    """Ask for ``what`` the way the admin commands do."""
    now = store.now()
    actions = {
        "cancel": store.cancel_job,
        "kill": store.kill_job,
        "pause": store.pause_job,
        "discard": store.discard_job,
    }
    return actions[what](job_id, now=now)


@pytest.mark.parametrize(("what", "end"), sorted(EXPECTED))
def test_a_request_survives_the_attempts_end(store: Store, what: str, end: str) -> None:
    """A request made while the job runs decides what its retry, snooze, release or pause write becomes."""
    job_id, lease = running_job(store)
    assert request(store, job_id, what) == REQUEST_STATES[what]
    now = store.now()
    [status] = store.apply_detailed([Transition(end, job_id, "worker-a", lease, dict(ENDS[end]))], now=now)
    expected = EXPECTED[(what, end)]
    assert status == expected
    row = store.get(job_id)
    assert row is not None and row.status == expected and row.cancel_requested is None
    if expected in ("cancelled", "failed"):
        assert row.finished_at is not None
    if expected == "failed":
        assert json.loads(row.errors or "[]")[-1]["type"] == "Discard"


def test_twenty_rounds_of_cancel_racing_a_retry_end_cancelled(store: Store) -> None:
    """Claim, request cancel, write the retry: every one of 20 rounds ends cancelled, none runs again."""
    now = store.now()
    ids = store.enqueue([NewJob(NAME, "{}", "default", 0, now, 5) for _ in range(20)], now=now)
    for job_id in ids:
        [claimed] = store.claim(worker="worker-a", limit=1, names=[NAME], queues=None, now=store.now())
        assert claimed.id == job_id
        assert store.cancel_job(job_id, now=store.now()) == "cancelling"
        retry = Transition("retry", job_id, "worker-a", claimed.lease, {"delay": 0.0, "errors": ERROR})
        assert store.apply_detailed([retry], now=store.now()) == ["cancelled"]
    assert store.claim(worker="worker-a", limit=20, names=[NAME], queues=None, now=store.now() + 3600) == []
    assert {row.status for row in store.list_jobs(name=NAME)} == {"cancelled"}


def test_without_a_request_the_writes_requeue_as_before(store: Store) -> None:
    """No request standing: retry, snooze and release put the job back to pending; transition() stays a bool."""
    for end in ("retry", "snooze", "release"):
        job_id, lease = running_job(store)
        assert store.apply_detailed([Transition(end, job_id, "worker-a", lease, dict(ENDS[end]))], now=store.now()) == [
            "pending"
        ]
        assert store.cancel_job(job_id, now=store.now()) == "cancelled"  # out of the next claim's way
    job_id, lease = running_job(store)
    assert (
        store.transition(Transition("retry", job_id, "worker-a", lease, dict(ENDS["retry"])), now=store.now()) is True
    )
    assert (
        store.transition(Transition("retry", job_id, "worker-a", lease, dict(ENDS["retry"])), now=store.now()) is False
    )


def test_a_refused_write_reports_none(store: Store) -> None:
    """A stale lease reports None, and the request stays for the current holder."""
    job_id, lease = running_job(store)
    request(store, job_id, "cancel")
    assert store.apply_detailed([Transition("retry", job_id, "worker-b", lease, dict(ENDS["retry"]))], now=0.0) == [
        None
    ]
    row = store.get(job_id)
    assert row is not None and (row.status, row.cancel_requested) == ("running", "cancel")


@pytest.mark.parametrize(("what", "expected"), [("cancel", "cancelled"), ("kill", "cancelled"), ("discard", "failed")])
def test_a_rescued_job_honours_a_request_that_ends_it(store: Store, what: str, expected: str) -> None:
    """A job whose worker died after the operator asked to end it ends instead of going back to pending."""
    job_id, _ = running_job(store, "ghost-worker")  # no worker row: lost at once
    request(store, job_id, what)
    [item] = rescue(store, rescue_after=60.0, max_crashes=3, now=store.now())
    assert item["status"] == expected
    row = store.get(job_id)
    assert row is not None and row.status == expected and row.crashes == 1
    kinds = [e["type"] for e in json.loads(row.errors or "[]")]
    assert kinds == (["WorkerLost", "Discard"] if what == "discard" else ["WorkerLost"])


def test_a_rescued_job_with_a_pause_request_is_paused(store: Store) -> None:
    """A pause asked of a job whose worker then died holds the job (paused) instead of requeueing it."""
    job_id, _ = running_job(store, "ghost-worker")
    request(store, job_id, "pause")
    assert [item["status"] for item in rescue(store, rescue_after=60.0, max_crashes=3, now=store.now())] == ["paused"]


def test_cancel_overrides_a_pending_pause_and_kill_overrides_all(store: Store) -> None:
    """Precedence of requests on a running job: pause < cancel < discard < kill; a weaker one never replaces."""
    job_id, _ = running_job(store)

    def standing() -> str | None:
        row = store.get(job_id)
        assert row is not None
        return row.cancel_requested

    assert request(store, job_id, "pause") == "pausing"
    assert request(store, job_id, "cancel") == "cancelling" and standing() == "cancel"
    assert request(store, job_id, "pause") == "cancelling" and standing() == "cancel"
    assert request(store, job_id, "discard") == "discarding" and standing() == "discard"
    assert request(store, job_id, "cancel") == "discarding" and standing() == "discard"
    assert request(store, job_id, "kill") == "killing" and standing() == "kill"
    for weaker in ("pause", "cancel", "discard"):
        assert request(store, job_id, weaker) == "killing" and standing() == "kill"


def test_kill_ends_a_pending_or_paused_job_at_once(store: Store) -> None:
    """kill_job on a pending or a paused job cancels it at once; on a finished one it reports its status."""
    now = store.now()
    pending, paused = store.enqueue([NewJob(NAME, "{}", "default", 0, now + 3600, 0) for _ in range(2)], now=now)
    assert store.pause_job(paused, now=now) == "paused"
    assert store.kill_job(pending, now=now) == "cancelled"
    assert store.kill_job(paused, now=now) == "cancelled"
    assert store.kill_job(pending, now=now) == "cancelled"  # already ended: its status
    assert store.kill_job(10_000, now=now) is None


def test_discarding_a_job_with_a_damaged_history_keeps_the_text(store: Store) -> None:
    """Discarding a pending job whose errors column is damaged keeps the raw text and adds the Discard entry."""
    now = store.now()
    [job_id] = store.enqueue([NewJob(NAME, "{}", "default", 0, now, 0)], now=now)
    with store.write() as conn:
        conn.execute(sa.text("UPDATE jobkit_jobs SET errors = '{oops' WHERE id = :id"), {"id": job_id})
    assert store.discard_job(job_id, now=now) == "failed"
    row = store.get(job_id)
    assert row is not None
    history = json.loads(row.errors or "[]")
    assert [e["type"] for e in history] == ["DamagedHistory", "Discard"] and history[0]["raw"] == "{oops"


def test_handle_kill_cancels_a_pending_job(queue: JobQueue) -> None:
    """handle.kill() on a pending job ends it cancelled at once; result() raises JobCancelled."""
    handle = AddOne.perform_later(n=1)
    assert handle.kill() == "cancelled"
    with pytest.raises(jobkit.JobCancelled):
        handle.result(timeout=5)


def test_queue_kill_job_asks_a_running_jobs_worker(queue: JobQueue) -> None:
    """queue.kill_job() on a running job records a kill request (its worker abandons the attempt)."""
    handle = AddOne.perform_later(n=1)
    queue.store.register_worker("worker-a", host="host", pid=os.getpid(), queues=None, concurrency=1)
    [claimed] = queue.store.claim(
        worker="worker-a", limit=1, names=["tests.add_one"], queues=None, now=queue.clock.now()
    )
    assert claimed.id == handle.id
    assert queue.kill_job(handle.id) == "killing"
    assert handle.refresh().cancel_requested == "kill"
    assert queue.discard_job(handle.id) is True  # asked already, more strongly: still ending
    assert handle.refresh().cancel_requested == "kill"


@pytest.mark.parametrize(
    ("what", "expected"), [("cancel", "cancelled"), ("kill", "cancelled"), ("discard", "failed"), ("pause", "paused")]
)
def test_a_request_landing_as_the_attempt_requeues_takes_the_requeued_job(
    store: Store, what: str, expected: str
) -> None:
    """The worker's requeue commits while the request waits on the row: the request still takes effect.

    PostgreSQL's read-committed UPDATE skips a row whose new version no longer matches, so a request
    that first found the job running (and no longer pending) and then found it pending (and no longer
    running) used to report ``pending`` and do nothing: the CI run of 2026-12-03 caught it live.
    """
    job_id, _ = running_job(store)
    holding = threading.Event()
    outcome: list[str | None] = []

    def requeue_slowly() -> None:
        with store.write() as conn:  # the worker's retry write, held open while the request arrives
            conn.execute(
                sa.text("UPDATE jobkit_jobs SET status = 'pending', worker_id = NULL WHERE id = :id"), {"id": job_id}
            )
            holding.set()
            time.sleep(0.3)

    writer = threading.Thread(target=requeue_slowly)
    writer.start()
    assert holding.wait(5)
    asker = threading.Thread(target=lambda: outcome.append(request(store, job_id, what)))
    asker.start()
    writer.join(10)
    asker.join(10)
    assert outcome == [expected]
    row = store.get(job_id)
    assert row is not None and row.status == expected

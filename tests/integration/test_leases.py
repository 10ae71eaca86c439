"""Fenced leases, straight on the store: stale writes never change a row, rescue never revives a finished job.

Three layers, each on SQLite and PostgreSQL:

* every lease kind, written with a stale lease (wrong worker, or an older lease after a
  release and re-claim, or after a rescue), is refused and leaves the row byte-for-byte
  unchanged, while the same write with the current lease takes;
* a rescue pass racing a worker's completions in another thread never revives a job whose
  completion took, and never loses one whose completion was refused;
* a hypothesis state machine drives arbitrary interleavings of enqueue, claim, heartbeat,
  worker death, rescue and writes from current and stale leases against a model.
"""

from __future__ import annotations

import json
import os
import random
import threading
from dataclasses import dataclass, replace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from jobkit._runtime.maintenance import rescue
from jobkit._store import ClaimedJob, JobRecord, NewJob, Store, Transition
from jobkit._vocabulary import JobState

NAME = "tests.lease_probe"
JOB_STATUSES = tuple(JobState)
RESCUE_AFTER = 60.0

#: Every fenced write a worker can make, with the values it carries (``now`` is the write's time).
WRITE_KINDS = ("complete", "retry", "fail", "cancel", "release", "snooze", "pause", "progress", "checkpoint")


def values_for(kind: str, now: float, tag: str = "x") -> dict[str, Any]:
    """The values a worker would send with a ``kind`` write made at ``now``."""
    error = json.dumps([{"attempt": 1, "type": "Boom", "message": tag, "traceback": None, "at": now}])
    return {
        "complete": {"result": json.dumps(f"result-{tag}")},
        "retry": {"run_at": now + 30.0, "errors": error},
        "fail": {"errors": error},
        "cancel": {"errors": error},
        "release": {"run_at": now},
        "snooze": {"run_at": now + 60.0},
        "pause": {},
        "progress": {"progress": json.dumps({"tag": tag})},
        "checkpoint": {"checkpoint": json.dumps({"stage": tag})},
    }[kind]


def expected_after(kind: str, before: JobRecord, now: float, values: dict[str, Any]) -> JobRecord:
    """The row a current-lease ``kind`` write must leave behind (the lease itself never moves)."""
    ended = {"finished_at": now, "updated_at": now, "cancel_requested": None}
    back = {"status": "pending", "worker_id": None, "updated_at": now, "cancel_requested": None}
    changes: dict[str, Any] = {
        "complete": {"status": "completed", "result": values.get("result"), **ended},
        "retry": {**back, "run_at": values.get("run_at"), "errors": values.get("errors")},
        "fail": {"status": "failed", "errors": values.get("errors"), **ended},
        "cancel": {"status": "cancelled", "errors": values.get("errors"), **ended},
        "release": {**back, "attempt": before.attempt - 1, "run_at": values.get("run_at")},
        "snooze": {**back, "attempt": before.attempt - 1, "run_at": values.get("run_at")},
        "pause": {**back, "status": "paused", "attempt": before.attempt - 1},
        "progress": {"progress": values.get("progress"), "updated_at": now},
        "checkpoint": {"checkpoint": values.get("checkpoint"), "updated_at": now},
    }[kind]
    return replace(before, **changes)


def enqueue(store: Store, now: float, count: int = 1, max_retries: int = 3, run_at: float = 0.0) -> list[int]:
    """Insert ``count`` probe jobs, due at ``run_at``."""
    rows = [NewJob(NAME, "{}", "default", 0, run_at, max_retries) for _ in range(count)]
    return store.enqueue(rows, now=now)


def claim_one(store: Store, worker: str, now: float) -> ClaimedJob:
    """Claim exactly one probe job for ``worker``."""
    [claimed] = store.claim(worker=worker, limit=1, names=[NAME], queues=None, now=now)
    return claimed


def make_stale(store: Store, worker: str) -> None:
    """Push a worker's heartbeat far into the past, by the database's clock: it now looks dead."""
    sql = sa.text(f"UPDATE jobkit_workers SET heartbeat_at = {store.dialect.db_now} - :back WHERE id = :id")
    with store.write() as conn:
        conn.execute(sql, {"back": 100 * RESCUE_AFTER, "id": worker})


def register(store: Store, worker: str) -> None:
    """Register a worker row for this test process."""
    store.register_worker(worker, host="test-host", pid=os.getpid(), queues=None, concurrency=4)


# -- 1. fenced writes, one kind at a time ------------------------------------------------------------------


@pytest.mark.parametrize("kind", WRITE_KINDS)
def test_stale_lease_write_is_refused_and_current_one_takes(store: Store, kind: str) -> None:
    """Wrong worker or an older lease: False and the row is untouched; the current lease: True and it lands."""
    now = store.now()
    [job_id] = enqueue(store, now)
    first = claim_one(store, "worker-a", now)
    assert (first.id, first.lease, first.attempt) == (job_id, 1, 1)

    # Another worker presenting the current lease number.
    before = store.get(job_id)
    assert not store.transition(
        Transition(kind, job_id, "worker-b", first.lease, values_for(kind, now + 1)), now=now + 1
    )
    assert store.get(job_id) == before

    # The same worker, after its job was released and claimed again: the old lease number is stale.
    assert store.transition(Transition("release", job_id, "worker-a", first.lease, {"run_at": now}), now=now + 2)
    second = claim_one(store, "worker-a", now + 3)
    assert (second.id, second.lease, second.attempt) == (job_id, 2, 1)
    before = store.get(job_id)
    assert before is not None
    stale = Transition(kind, job_id, "worker-a", first.lease, values_for(kind, now + 4, "stale"))
    assert not store.transition(stale, now=now + 4)
    assert store.get(job_id) == before

    # The current lease takes, and changes exactly what the kind says.
    values = values_for(kind, now + 5, "current")
    assert store.transition(Transition(kind, job_id, "worker-a", second.lease, values), now=now + 5)
    after = store.get(job_id)
    assert after == expected_after(kind, before, now + 5, values)

    if after is not None and after.status != "running":
        # The lease ended with that write: replaying it, or the old one, changes nothing.
        for lease in (second.lease, first.lease):
            replay = Transition(kind, job_id, "worker-a", lease, values_for(kind, now + 6, "replay"))
            assert not store.transition(replay, now=now + 6)
            assert store.get(job_id) == after


@pytest.mark.parametrize("kind", WRITE_KINDS)
def test_write_on_a_job_that_is_not_running_is_refused(store: Store, kind: str) -> None:
    """A pending job has no current lease: even its last holder's lease number writes nothing."""
    now = store.now()
    [job_id] = enqueue(store, now)
    claimed = claim_one(store, "worker-a", now)
    assert store.transition(Transition("retry", job_id, "worker-a", claimed.lease, values_for("retry", now)), now=now)
    before = store.get(job_id)
    assert before is not None and before.status == "pending"
    for worker in ("worker-a", "worker-b"):
        assert not store.transition(
            Transition(kind, job_id, worker, claimed.lease, values_for(kind, now + 1)), now=now + 1
        )
        assert store.get(job_id) == before


def test_stale_complete_after_rescue_never_resurrects_the_job(store: Store) -> None:
    """A rescued job stays rescued: the lost worker's late completion is refused before and after a re-claim."""
    register(store, "worker-a")
    register(store, "worker-b")
    now = store.now()
    [job_id] = enqueue(store, now)
    lost = claim_one(store, "worker-a", now)
    make_stale(store, "worker-a")
    assert [r["job_id"] for r in rescue(store, rescue_after=RESCUE_AFTER, max_crashes=3, now=now + 1)] == [job_id]

    rescued = store.get(job_id)
    assert rescued is not None
    assert (rescued.status, rescued.worker_id, rescued.crashes, rescued.attempt) == ("pending", None, 1, 1)
    late = Transition("complete", job_id, "worker-a", lost.lease, {"result": json.dumps("late")})
    assert not store.transition(late, now=now + 2)
    assert store.get(job_id) == rescued

    again = claim_one(store, "worker-b", now + 3)
    assert (again.lease, again.attempt) == (lost.lease + 1, 2)
    running = store.get(job_id)
    assert not store.transition(late, now=now + 4)
    # The lost worker cannot borrow the new holder's lease number either.
    assert not store.transition(replace(late, lease=again.lease), now=now + 4)
    assert store.get(job_id) == running

    assert store.transition(Transition("complete", job_id, "worker-b", again.lease, {"result": '"ok"'}), now=now + 5)
    done = store.get(job_id)
    assert done is not None and (done.status, done.result, done.worker_id) == ("completed", '"ok"', "worker-b")
    assert not store.transition(late, now=now + 6)
    assert store.get(job_id) == done


def test_stale_complete_after_poison_pill_rescue_keeps_the_job_failed(store: Store) -> None:
    """A job rescued to ``failed`` (crash budget spent) is not completed by the lost worker's late write."""
    register(store, "worker-a")
    now = store.now()
    [job_id] = enqueue(store, now)
    lost = claim_one(store, "worker-a", now)
    make_stale(store, "worker-a")
    assert rescue(store, rescue_after=RESCUE_AFTER, max_crashes=1, now=now + 1) == [
        {"job_id": job_id, "status": "failed", "worker": "worker-a", "crashes": 1}
    ]
    failed = store.get(job_id)
    assert failed is not None and failed.status == "failed"
    assert json.loads(failed.errors or "[]")[-1]["type"] == "WorkerLost"
    for kind in WRITE_KINDS:
        assert not store.transition(
            Transition(kind, job_id, "worker-a", lost.lease, values_for(kind, now + 2)), now=now + 2
        )
    assert store.get(job_id) == failed


def test_rescue_leaves_a_live_workers_job_alone(store: Store) -> None:
    """Rescue takes only jobs of workers whose heartbeat is stale by the database's clock."""
    register(store, "worker-a")
    now = store.now()
    [job_id] = enqueue(store, now)
    claimed = claim_one(store, "worker-a", now)
    assert store.heartbeat("worker-a") is not None
    before = store.get(job_id)
    assert rescue(store, rescue_after=RESCUE_AFTER, max_crashes=3, now=now + 1) == []
    assert store.get(job_id) == before
    assert store.held_jobs("worker-a") == [(job_id, claimed.lease, None)]


def test_one_batch_reports_each_write_by_its_own_lease(store: Store) -> None:
    """In one apply, stale and current writes of several workers each report (and do) exactly their own."""
    now = store.now()
    ids = enqueue(store, now, count=4)
    a1, a2 = store.claim(worker="worker-a", limit=2, names=[NAME], queues=None, now=now)
    b1, b2 = store.claim(worker="worker-b", limit=2, names=[NAME], queues=None, now=now)
    assert [a1.id, a2.id, b1.id, b2.id] == ids
    before = {i: store.get(i) for i in ids}
    batch = [
        Transition("complete", a1.id, "worker-a", a1.lease, {"result": "1"}),
        Transition("complete", a2.id, "worker-b", a2.lease, {"result": "2"}),  # wrong worker
        Transition("complete", b1.id, "worker-b", b1.lease, {"result": "3"}),
        Transition("complete", b2.id, "worker-b", b2.lease + 1, {"result": "4"}),  # lease never issued
        Transition("progress", a2.id, "worker-a", a2.lease, {"progress": '{"p": 1}'}),
        Transition("retry", b2.id, "worker-a", b2.lease, values_for("retry", now)),  # wrong worker
    ]
    assert store.apply(batch, now=now + 1) == [True, False, True, False, True, False]
    assert [row.status for row in map(store.get, ids) if row] == ["completed", "running", "completed", "running"]
    assert store.get(b2.id) == before[b2.id]
    a2_after = store.get(a2.id)
    assert a2_after is not None and a2_after.progress == '{"p": 1}' and a2_after.result is None


def test_progress_batched_with_its_completion_lands_first(store: Store) -> None:
    """The worker writes a finished job's last progress and its completion in one batch, in that order: both take."""
    now = store.now()
    [job_id] = enqueue(store, now)
    held = claim_one(store, "worker-a", now)
    batch = [
        Transition("progress", job_id, "worker-a", held.lease, {"progress": '{"percent": 100}'}),
        Transition("complete", job_id, "worker-a", held.lease, {"result": '"done"'}),
    ]
    assert store.apply(batch, now=now + 1) == [True, True]
    done = store.get(job_id)
    assert done is not None and (done.status, done.progress, done.result) == ("completed", '{"percent": 100}', '"done"')


def test_stale_and_current_completion_of_one_job_in_one_batch(store: Store) -> None:
    """Two attempts of one job by the same worker finish together: only the current lease reports that it took."""
    now = store.now()
    [job_id] = enqueue(store, now)
    old = claim_one(store, "worker-a", now)
    assert store.transition(Transition("release", job_id, "worker-a", old.lease, {"run_at": now}), now=now)
    new = claim_one(store, "worker-a", now + 1)
    batch = [
        Transition("complete", job_id, "worker-a", old.lease, {"result": '"old"'}),
        Transition("complete", job_id, "worker-a", new.lease, {"result": '"new"'}),
    ]
    assert store.apply(batch, now=now + 2) == [False, True]
    done = store.get(job_id)
    assert done is not None and (done.status, done.result, done.lease) == ("completed", '"new"', new.lease)


# -- 2. rescue racing completions ----------------------------------------------------------------------------


def race_round(
    store: Store, holder: str, rng: random.Random, size: int
) -> tuple[list[ClaimedJob], dict[int, bool], list[int]]:
    """Run one rescue pass against the holder's completions; returns (its jobs, whether each completion took, rescued ids)."""
    register(store, holder)
    now = store.now()
    enqueue(store, now, count=size)
    claimed = store.claim(worker=holder, limit=size, names=[NAME], queues=None, now=now)
    assert len(claimed) == size
    make_stale(store, holder)

    order = claimed[:]
    rng.shuffle(order)
    batches: list[list[ClaimedJob]] = []
    while order:
        cut = rng.randint(1, 4)
        batches.append(order[:cut])
        order = order[cut:]
    limits = [rng.randint(1, 6) for _ in range(size)]

    took: dict[int, bool] = {}
    rescued: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def complete() -> None:
        try:
            start.wait()
            for batch in batches:
                writes = [Transition("complete", j.id, holder, j.lease, {"result": json.dumps(j.id)}) for j in batch]
                for job, ok in zip(batch, store.apply(writes, now=store.now()), strict=True):
                    took[job.id] = ok
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def rescue_all() -> None:
        try:
            start.wait()
            passes = 0
            # Until the holder holds nothing: a pass that found only just-completed jobs returns [].
            while store.held_jobs(holder):
                limit = limits[passes % len(limits)]
                rescued.extend(
                    r["job_id"]
                    for r in rescue(store, rescue_after=RESCUE_AFTER, max_crashes=3, now=store.now(), limit=limit)
                )
                passes += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=complete), threading.Thread(target=rescue_all)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    assert not any(t.is_alive() for t in threads)
    return claimed, took, rescued


def test_rescue_racing_completions_never_revives_a_completed_job(store: Store) -> None:
    """A rescue pass and the lost holder's completions run at once: each job ends exactly one way.

    Either the holder's completion took (completed, its result, never rescued) or the rescue
    took (pending, a WorkerLost error, one crash) and the completion was refused. Rescue runs
    in small passes and completions in small batches, in random order, so their transactions
    interleave; over all rounds both outcomes must occur, or the race did not happen.
    """
    rng = random.Random(1234)
    totals = {"completed": 0, "rescued": 0}
    for round_no in range(12):
        holder = f"holder-{round_no}"
        claimed, took, rescued = race_round(store, holder, rng, 40)
        assert len(rescued) == len(set(rescued)), "a job was rescued twice"
        assert set(took) == {j.id for j in claimed}
        for job in claimed:
            row = store.get(job.id)
            assert row is not None, f"job {job.id} was lost"
            if took[job.id]:
                assert job.id not in rescued, f"job {job.id} completed and was also rescued"
                assert (row.status, row.result, row.crashes) == ("completed", json.dumps(job.id), 0)
                assert row.worker_id == holder and row.lease == job.lease
                totals["completed"] += 1
            else:
                assert job.id in rescued, f"job {job.id}: completion refused but nobody rescued it"
                assert (row.status, row.worker_id, row.result, row.crashes) == ("pending", None, None, 1)
                assert json.loads(row.errors or "[]")[-1]["type"] == "WorkerLost"
                totals["rescued"] += 1
    assert totals["completed"] > 0 and totals["rescued"] > 0, f"no race happened: {totals}"


# -- 3. the state machine ------------------------------------------------------------------------------------

WORKERS = ("w0", "w1")
MAX_CRASHES = 3
#: Writes that end a lease, and writes that hand the job back (or keep it running); two rules, so writes
#: come up as often as claims.
ENDING_KINDS = ("complete", "fail")
REQUEUE_KINDS = ("retry", "release", "snooze", "progress")


@dataclass
class ModelJob:
    """What the model expects of one job's row."""

    id: int
    max_retries: int
    run_at: float
    status: str = "pending"
    worker: str | None = None
    lease: int = 0
    attempt: int = 0
    crashes: int = 0
    result: str | None = None
    progress: str | None = None


def reset(store: Store) -> None:
    """Empty the tables between examples (the schema and migrations stay)."""
    with store.write() as conn:
        conn.execute(sa.text("DELETE FROM jobkit_jobs"))
        conn.execute(sa.text("DELETE FROM jobkit_workers"))


def lease_machine(store: Store) -> type[RuleBasedStateMachine]:
    """A state machine class over ``store``; each example starts from empty tables."""

    class Leases(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            reset(store)
            for worker in WORKERS:
                register(store, worker)
            # A logical clock for run_at and timestamps; liveness uses the database's real clock.
            self.t = 1_000_000.0
            self.jobs: dict[int, ModelJob] = {}
            self.alive = dict.fromkeys(WORKERS, True)
            # Every lease ever issued, per job: (worker, lease number); all but the newest are stale.
            self.leases: dict[int, list[tuple[str, int]]] = {}
            self.seen_lease: dict[int, int] = {}

        def tick(self) -> float:
            self.t += 1.0
            return self.t

        @initialize(max_retries=st.integers(0, 2))
        def first_jobs(self, max_retries: int) -> None:
            self.enqueue(2, max_retries)

        # Few unfinished jobs at a time, so each lives through many claims, releases and rescues.
        @precondition(lambda self: sum(j.status in ("pending", "running") for j in self.jobs.values()) < 3)
        @rule(count=st.integers(1, 2), max_retries=st.integers(0, 2))
        def enqueue(self, count: int, max_retries: int) -> None:
            now = self.tick()
            for job_id in enqueue(store, now, count, max_retries, run_at=now):
                assert job_id not in self.jobs
                self.jobs[job_id] = ModelJob(job_id, max_retries, now)

        def has_due(self) -> bool:
            return any(j.status == "pending" and j.run_at <= self.t + 1 for j in self.jobs.values())

        @precondition(has_due)
        @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
        def claim(self, worker: str, limit: int) -> None:
            now = self.tick()
            due = [j for j in self.jobs.values() if j.status == "pending" and j.run_at <= now]
            due.sort(key=lambda j: (j.run_at, j.id))
            got = store.claim(worker=worker, limit=limit, names=[NAME], queues=None, now=now)
            assert [c.id for c in got] == [j.id for j in due[:limit]]
            for claimed, job in zip(got, due, strict=False):
                job.status, job.worker, job.lease, job.attempt = "running", worker, job.lease + 1, job.attempt + 1
                assert (claimed.lease, claimed.attempt, claimed.worker_id) == (job.lease, job.attempt, worker)
                self.leases.setdefault(job.id, []).append((worker, job.lease))

        @rule(worker=st.sampled_from(WORKERS), alive=st.booleans())
        def liveness(self, worker: str, alive: bool) -> None:
            if alive:
                assert store.heartbeat(worker) is not None
            else:
                make_stale(store, worker)
            self.alive[worker] = alive

        @rule()
        def rescue(self) -> None:
            now = self.tick()
            expected: dict[int, str] = {}
            for job in self.jobs.values():
                if job.status == "running" and job.worker is not None and not self.alive[job.worker]:
                    spent = job.crashes + 1 >= MAX_CRASHES or job.attempt > job.max_retries
                    expected[job.id] = "failed" if spent else "pending"
            got = rescue(store, rescue_after=RESCUE_AFTER, max_crashes=MAX_CRASHES, now=now)
            assert {r["job_id"]: r["status"] for r in got} == expected
            for job_id, status in expected.items():
                job = self.jobs[job_id]
                job.status, job.crashes = status, job.crashes + 1
                if status == "pending":
                    job.worker, job.run_at = None, now

        @precondition(lambda self: bool(self.leases))
        @rule(kind=st.sampled_from(ENDING_KINDS), data=st.data())
        def end(self, kind: str, data: st.DataObject) -> None:
            self.write(kind, data, 0)

        @precondition(lambda self: bool(self.leases))
        @rule(kind=st.sampled_from(REQUEUE_KINDS), data=st.data(), delay=st.integers(0, 3))
        def requeue(self, kind: str, data: st.DataObject, delay: int) -> None:
            self.write(kind, data, delay)

        def write(self, kind: str, data: st.DataObject, delay: int) -> None:
            # A job first, then one of its leases: stale leases of a job now running again come up often.
            job_id = data.draw(st.sampled_from(sorted(self.leases)), label="job")
            worker, lease = data.draw(st.sampled_from(self.leases[job_id]), label="lease")
            if data.draw(st.integers(0, 3), label="forge") == 3:
                # A lease number presented by a worker it was never issued to.
                worker = data.draw(st.sampled_from([w for w in WORKERS if w != worker]), label="forged worker")
            self.write_lease(kind, job_id, worker, lease, delay)

        @precondition(lambda self: any(j.status == "running" for j in self.jobs.values()))
        @rule(data=st.data())
        def hand_back_and_claim(self, data: st.DataObject) -> None:
            # A worker releases a job and claims again at once: it then holds a newer lease on the
            # same job or another, and its old lease is stale under its own name.
            job = data.draw(st.sampled_from([j for j in self.jobs.values() if j.status == "running"]), label="job")
            assert job.worker is not None
            worker = job.worker
            self.write_lease("release", job.id, worker, job.lease, 0)
            if self.has_due():
                self.claim(worker, 1)

        def write_lease(self, kind: str, job_id: int, worker: str, lease: int, delay: int) -> None:
            job = self.jobs[job_id]
            current = job.status == "running" and job.worker == worker and job.lease == lease
            now = self.tick()
            values = values_for(kind, now, f"{job_id}-{lease}")
            if kind in ("retry", "snooze"):
                values["run_at"] = now + delay
            before = store.get(job_id)
            took = store.transition(Transition(kind, job_id, worker, lease, values), now=now)
            after = store.get(job_id)
            if not current:
                assert not took, f"stale {kind} with lease {lease} of {worker} took on {before}"
                assert after == before
                return
            assert took, f"current {kind} with lease {lease} of {worker} was refused on {before}"
            assert before is not None and after == expected_after(kind, before, now, values)
            if kind == "complete":
                job.status, job.result = "completed", values["result"]
            elif kind == "fail":
                job.status = "failed"
            elif kind == "progress":
                job.progress = values["progress"]
            else:
                job.status, job.worker, job.run_at = "pending", None, values["run_at"]
                if kind in ("release", "snooze"):
                    job.attempt -= 1

        @invariant()
        def rows_match_the_model(self) -> None:
            rows = {r.id: r for r in store.list_jobs(limit=10_000)}
            assert set(rows) == set(self.jobs), "a job was lost or appeared from nowhere"
            for job_id, row in rows.items():
                job = self.jobs[job_id]
                assert row.status in JOB_STATUSES
                if row.status == "running":
                    assert row.worker_id is not None
                assert row.lease >= self.seen_lease.get(job_id, 0), "a lease number went backwards"
                self.seen_lease[job_id] = row.lease
                actual = (row.status, row.worker_id, row.lease, row.attempt, row.crashes, row.result, row.progress)
                model = (job.status, job.worker, job.lease, job.attempt, job.crashes, job.result, job.progress)
                assert actual == model
                if row.status == "pending":
                    assert row.run_at == job.run_at

    return Leases


@pytest.mark.chaos
def test_lease_state_machine(store: Store) -> None:
    """Arbitrary interleavings of claim, heartbeat, worker death, rescue and writes from any lease ever issued.

    Invariants: a stale write returns False and leaves the row unchanged; a current one takes;
    every enqueued job exists in exactly the state the model predicts; no job runs without a
    worker; a job's lease number never decreases.
    """
    run_state_machine_as_test(
        lease_machine(store),
        settings=settings(
            max_examples=100,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

"""The store contract: what every implementation of ``jobkit._store.Store`` does, on SQLite and PostgreSQL.

Each test drives the protocol's methods only (plus a raw statement where a row must be set up
or damaged by hand), through the shared ``store`` fixture, so a change to either dialect or to
the composed store is checked by running this file.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from jobkit._store import Completion, ConcurrencyKey, JobPage, MinuteCount, NewJob, Rescue, Store, Transition, UniqueJob
from jobkit._vocabulary import JobState, TransitionKind

NAME = "tests.contract_probe"
OTHER = "tests.contract_other"
WORKER = "worker-a"


def enqueue(
    store: Store,
    count: int = 1,
    *,
    name: str = NAME,
    queue: str = "default",
    priority: int = 0,
    run_at: float | None = None,
    args: str = "{}",
    max_retries: int = 3,
) -> list[int]:
    """Insert ``count`` jobs due now (or at ``run_at``)."""
    now = store.now()
    due = now if run_at is None else run_at
    return store.enqueue([NewJob(name, args, queue, priority, due, max_retries) for _ in range(count)], now=now)


def claim(
    store: Store, limit: int = 10, *, names: list[str] | None = None, queues: list[str] | None = None
) -> list[int]:
    """Claim for WORKER; returns the claimed ids in claim order."""
    jobs = store.claim(worker=WORKER, limit=limit, names=names or [NAME], queues=queues, now=store.now())
    return [job.id for job in jobs]


def in_state(store: Store, state: str) -> int:
    """A fresh job in ``state``; it claims the oldest pending job, so make these before other pending jobs."""
    [job_id] = enqueue(store)
    if state == JobState.PENDING:
        return job_id
    if state == JobState.PAUSED:
        assert store.pause_job(job_id, now=store.now()) == JobState.PAUSED
        return job_id
    if state == JobState.CANCELLED:
        assert store.cancel_job(job_id, now=store.now()) == JobState.CANCELLED
        return job_id
    [job] = store.claim(worker=WORKER, limit=1, names=[NAME], queues=None, now=store.now())
    assert job.id == job_id
    if state == JobState.RUNNING:
        return job_id
    kind = {JobState.COMPLETED: TransitionKind.COMPLETE, JobState.FAILED: TransitionKind.FAIL}[JobState(state)]
    values = {"result": "1"} if kind is TransitionKind.COMPLETE else {"errors": "[]"}
    assert store.transition(Transition(kind, job_id, WORKER, job.lease, values), now=store.now())
    return job_id


def status(store: Store, job_id: int) -> str | None:
    """The job's stored status."""
    return store.status_of(job_id)


# -- claiming ------------------------------------------------------------------------------------


def test_claim_order_is_priority_then_run_at_then_id(store: Store) -> None:
    """Due jobs are claimed lowest priority number first, then earliest run_at, then lowest id."""
    now = store.now()
    late_low = enqueue(store, priority=5, run_at=now - 10)
    early_low = enqueue(store, priority=5, run_at=now - 20)
    high_a = enqueue(store, 2, priority=-1, run_at=now - 1)
    mid = enqueue(store, priority=0, run_at=now - 30)
    assert claim(store, 2) == high_a
    assert claim(store, 10) == [*mid, *early_low, *late_low]


def test_a_job_scheduled_later_is_not_claimed_before_its_time(store: Store) -> None:
    """run_at in the future: the job stays pending until then."""
    [later] = enqueue(store, run_at=store.now() + 3600)
    [due] = enqueue(store)
    assert claim(store) == [due]
    assert status(store, later) == JobState.PENDING


def test_claim_takes_only_the_named_types(store: Store) -> None:
    """A worker claims only job types it runs."""
    mine = enqueue(store, 2)
    enqueue(store, 2, name=OTHER)
    assert claim(store, names=[NAME]) == mine


def test_queue_filter_claims_only_those_queues(store: Store) -> None:
    """With queues given, jobs of other queues are left alone; without, every queue is claimed."""
    [a] = enqueue(store, queue="a")
    [b] = enqueue(store, queue="b")
    [c] = enqueue(store, queue="c")
    assert claim(store, queues=["a", "c"]) == [a, c]
    assert claim(store) == [b]


def test_a_paused_queue_is_not_claimed_until_resumed(store: Store) -> None:
    """pause_queue hides a queue from every claim; resume_queue gives it back."""
    [held] = enqueue(store, queue="held")
    [free] = enqueue(store, queue="free")
    store.pause_queue("held", now=store.now())
    assert claim(store) == [free]
    assert claim(store, queues=["held"]) == []
    assert store.resume_queue("held") is True
    assert claim(store) == [held]


def test_claim_returns_the_leased_rows(store: Store) -> None:
    """A claimed job carries its stored fields, attempt 1 and lease 1, and is running for its worker."""
    [job_id] = enqueue(store, args='{"x": 1}', priority=4, max_retries=7)
    [job] = store.claim(worker=WORKER, limit=1, names=[NAME], queues=None, now=store.now())
    assert (job.id, job.name, job.args, job.priority, job.max_retries) == (job_id, NAME, '{"x": 1}', 4, 7)
    assert (job.attempt, job.lease, job.crashes, job.worker_id) == (1, 1, 0, WORKER)
    row = store.get(job_id)
    assert row is not None and (row.status, row.worker_id) == (JobState.RUNNING, WORKER)


def test_claim_of_nothing_asks_nothing(store: Store) -> None:
    """limit 0 or no job types: an empty claim."""
    enqueue(store)
    assert store.claim(worker=WORKER, limit=0, names=[NAME], queues=None, now=store.now()) == []
    assert store.claim(worker=WORKER, limit=5, names=[], queues=None, now=store.now()) == []


# -- enqueueing ------------------------------------------------------------------------------------

AWKWARD = ['quote " backslash \\ tab \t', "ünïcødé ✓ 日本", "{not: json}", "", "null", "a\nb", "100% _under_"]


@pytest.mark.parametrize("count", [1, 7])
def test_enqueue_stores_every_field_exactly(store: Store, count: int) -> None:
    """One row and a bulk insert alike store name, args, queue, priority, run_at and retries unchanged."""
    now = store.now()
    rows = [
        NewJob(NAME, json.dumps({"text": AWKWARD[i % len(AWKWARD)]}), f"q-{i}", i - 3, now + 1234.567891 + i, i)
        for i in range(count)
    ]
    ids = store.enqueue(rows, now=now)
    assert ids == sorted(ids) and len(set(ids)) == count
    for job_id, row in zip(ids, rows, strict=True):
        stored = store.get(job_id)
        assert stored is not None
        assert (stored.name, stored.args, stored.queue, stored.priority) == (
            row.name,
            row.args,
            row.queue,
            row.priority,
        )
        assert (stored.run_at, stored.max_retries, stored.created_at) == (row.run_at, row.max_retries, now)
        assert (stored.status, stored.attempt, stored.crashes, stored.lease) == (JobState.PENDING, 0, 0, 0)
        assert (stored.worker_id, stored.result, stored.errors, stored.progress) == (None, None, None, None)


def test_bulk_enqueue_returns_ids_in_row_order(store: Store) -> None:
    """Ids come back in the order the rows were given, and claiming by id order follows them."""
    now = store.now()
    rows = [NewJob(NAME, json.dumps({"i": i}), "default", 0, now - 1, 0) for i in range(50)]
    ids = store.enqueue(rows, now=now)
    assert [json.loads(row.args)["i"] for row in map(store.get, ids) if row] == list(range(50))


def test_enqueue_in_the_callers_transaction_exists_only_if_it_commits(store: Store, db_url: str) -> None:
    """With ``connection`` the rows join that transaction: a rollback leaves nothing behind."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            ids = store.enqueue(
                [NewJob(NAME, "{}", "default", 0, store.now(), 0)] * 3, now=store.now(), connection=conn
            )
            transaction.rollback()
        assert [store.get(job_id) for job_id in ids] == [None, None, None]
        with engine.begin() as conn:
            [kept] = store.enqueue([NewJob(NAME, "{}", "default", 0, store.now(), 0)], now=store.now(), connection=conn)
        assert status(store, kept) == JobState.PENDING
    finally:
        engine.dispose()


# -- fencing ---------------------------------------------------------------------------------------


def test_a_stale_lease_is_refused_and_the_current_one_takes(store: Store) -> None:
    """A write with a lease that is not the job's current (worker, lease) changes nothing."""
    [job_id] = enqueue(store)
    [old] = store.claim(worker=WORKER, limit=1, names=[NAME], queues=None, now=store.now())
    assert store.transition(
        Transition(TransitionKind.RELEASE, job_id, WORKER, old.lease, {"delay": 0.0}), now=store.now()
    )
    [new] = store.claim(worker=WORKER, limit=1, names=[NAME], queues=None, now=store.now())
    before = store.get(job_id)
    stale = [
        Transition(TransitionKind.COMPLETE, job_id, WORKER, old.lease, {"result": "1"}),
        Transition(TransitionKind.FAIL, job_id, "worker-b", new.lease, {"errors": "[]"}),
        Transition(TransitionKind.PROGRESS, job_id, WORKER, old.lease, {"progress": "{}"}),
    ]
    assert store.apply(stale, now=store.now()) == [False, False, False]
    assert store.complete(worker=WORKER, rows=[Completion(job_id, old.lease, "1")], now=store.now()) == set()
    assert not store.write_progress(job_id, worker=WORKER, lease=old.lease, progress="{}", now=store.now())
    assert store.get(job_id) == before
    assert store.complete(worker=WORKER, rows=[Completion(job_id, new.lease, "2")], now=store.now()) == {job_id}
    done = store.get(job_id)
    assert done is not None and (done.status, done.result) == (JobState.COMPLETED, "2")


def test_apply_detailed_reports_the_state_each_write_left(store: Store) -> None:
    """Per write: the job's state after it, or None when the lease was refused."""
    a, b = enqueue(store, 2)
    ja, jb = store.claim(worker=WORKER, limit=2, names=[NAME], queues=None, now=store.now())
    writes = [
        Transition(TransitionKind.RETRY, a, WORKER, ja.lease, {"delay": 60.0, "errors": "[]"}),
        Transition(TransitionKind.FAIL, b, WORKER, jb.lease + 1, {"errors": "[]"}),
    ]
    assert store.apply_detailed(writes, now=store.now()) == [JobState.PENDING, None]


# -- admin operations, in each state they can meet ---------------------------------------------------

ALL_STATES = [
    JobState.PENDING,
    JobState.PAUSED,
    JobState.RUNNING,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
]

# (operation, state) -> (what it returns, the job's status after it, its standing request after it)
REQUESTS: dict[tuple[str, JobState], tuple[str, JobState, str | None]] = {
    ("cancel_job", JobState.PENDING): ("cancelled", JobState.CANCELLED, None),
    ("cancel_job", JobState.PAUSED): ("cancelled", JobState.CANCELLED, None),
    ("cancel_job", JobState.RUNNING): ("cancelling", JobState.RUNNING, "cancel"),
    ("kill_job", JobState.PENDING): ("cancelled", JobState.CANCELLED, None),
    ("kill_job", JobState.PAUSED): ("cancelled", JobState.CANCELLED, None),
    ("kill_job", JobState.RUNNING): ("killing", JobState.RUNNING, "kill"),
    ("pause_job", JobState.PENDING): ("paused", JobState.PAUSED, None),
    ("pause_job", JobState.PAUSED): ("paused", JobState.PAUSED, None),
    ("pause_job", JobState.RUNNING): ("pausing", JobState.RUNNING, "pause"),
    ("discard_job", JobState.PENDING): ("failed", JobState.FAILED, None),
    ("discard_job", JobState.PAUSED): ("failed", JobState.FAILED, None),
    ("discard_job", JobState.RUNNING): ("discarding", JobState.RUNNING, "discard"),
    ("resume_job", JobState.PENDING): ("pending", JobState.PENDING, None),
    ("resume_job", JobState.PAUSED): ("pending", JobState.PENDING, None),
    ("resume_job", JobState.RUNNING): ("running", JobState.RUNNING, None),
}
for _op in ("cancel_job", "kill_job", "pause_job", "discard_job", "resume_job"):
    for _state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
        REQUESTS[(_op, _state)] = (_state.value, _state, None)


def operation(store: Store, name: str) -> Callable[..., str | None]:
    """One of the job-level admin methods of ``store``, by name."""
    return {
        "cancel_job": store.cancel_job,
        "kill_job": store.kill_job,
        "pause_job": store.pause_job,
        "discard_job": store.discard_job,
        "resume_job": store.resume_job,
    }[name]


@pytest.mark.parametrize(("name", "state"), sorted(REQUESTS))
def test_each_admin_action_in_each_state(store: Store, name: str, state: JobState) -> None:
    """What cancel, kill, pause, discard and resume return and leave, from every state a job can be in."""
    job_id = in_state(store, state)
    returned, after, request = REQUESTS[(name, state)]
    assert operation(store, name)(job_id, now=store.now()) == returned
    row = store.get(job_id)
    assert row is not None and (row.status, row.cancel_requested) == (after, request)


@pytest.mark.parametrize("name", ["cancel_job", "kill_job", "pause_job", "discard_job", "resume_job"])
def test_admin_actions_on_a_missing_job_return_none(store: Store, name: str) -> None:
    """An id that names no job: None, nothing written."""
    assert operation(store, name)(10_000, now=store.now()) is None


def test_resume_withdraws_a_pause_not_yet_delivered(store: Store) -> None:
    """A running job asked to pause, then resumed before its worker saw it: the request is gone."""
    job_id = in_state(store, JobState.RUNNING)
    assert store.pause_job(job_id, now=store.now()) == "pausing"
    assert store.resume_job(job_id, now=store.now()) == JobState.RUNNING
    row = store.get(job_id)
    assert row is not None and row.cancel_requested is None


def test_discard_records_the_reason(store: Store) -> None:
    """A discarded pending job ends failed with a Discard entry carrying the reason."""
    job_id = in_state(store, JobState.PENDING)
    assert store.discard_job(job_id, now=store.now(), reason="bad input") == JobState.FAILED
    row = store.get(job_id)
    assert row is not None and json.loads(row.errors or "[]")[-1] | {"at": 0} == {
        "attempt": 0,
        "type": "Discard",
        "message": "bad input",
        "traceback": None,
        "at": 0,
    }


@pytest.mark.parametrize("state", ALL_STATES)
def test_retry_job_takes_failed_and_cancelled_jobs_only(store: Store, state: JobState) -> None:
    """retry_job puts a failed or cancelled job back to pending with fresh attempts; others are refused."""
    job_id = in_state(store, state)
    took = store.retry_job(job_id, now=store.now())
    assert took is (state in (JobState.FAILED, JobState.CANCELLED))
    row = store.get(job_id)
    assert row is not None
    if took:
        assert (row.status, row.attempt, row.finished_at, row.worker_id) == (JobState.PENDING, 0, None, None)
    else:
        assert row.status == state


@pytest.mark.parametrize("state", ALL_STATES)
def test_delete_job_takes_terminal_jobs_only(store: Store, state: JobState) -> None:
    """delete_job removes a completed, failed or cancelled job and refuses any other."""
    job_id = in_state(store, state)
    assert store.delete_job(job_id) is state.terminal
    assert (store.get(job_id) is None) is state.terminal


def test_clear_deletes_one_terminal_status_within_its_filters(store: Store) -> None:
    """clear(status) deletes only that status, of the given type and queue, finished before the cutoff."""
    kept_running = in_state(store, JobState.RUNNING)
    completed = [in_state(store, JobState.COMPLETED) for _ in range(2)]
    failed = in_state(store, JobState.FAILED)
    assert store.clear(JobState.COMPLETED, finished_before=store.now() - 3600) == 0
    assert store.clear(JobState.COMPLETED, name=OTHER) == 0
    assert store.clear(JobState.COMPLETED, queue="elsewhere") == 0
    assert store.clear(JobState.COMPLETED, name=NAME, queue="default") == 2
    assert [store.get(job_id) for job_id in completed] == [None, None]
    assert status(store, failed) == JobState.FAILED and status(store, kept_running) == JobState.RUNNING


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.RUNNING, JobState.PAUSED])
def test_clear_refuses_a_state_that_is_not_terminal(store: Store, state: JobState) -> None:
    """Unfinished jobs are never cleared in bulk."""
    with pytest.raises(ValueError, match="can only clear terminal jobs"):
        store.clear(state)


def test_retry_failed_requeues_every_failed_job_of_the_filter(store: Store) -> None:
    """retry_failed counts and requeues failed jobs only, of the given type."""
    failed = [in_state(store, JobState.FAILED) for _ in range(3)]
    cancelled = in_state(store, JobState.CANCELLED)
    assert store.retry_failed(now=store.now(), name=OTHER) == 0
    assert store.retry_failed(now=store.now(), name=NAME) == 3
    assert [status(store, job_id) for job_id in failed] == [JobState.PENDING] * 3
    assert status(store, cancelled) == JobState.CANCELLED


def test_pausing_a_queue_twice_and_resuming(store: Store) -> None:
    """pause_queue is idempotent; resume_queue says whether the queue was paused."""
    store.pause_queue("b", now=store.now())
    store.pause_queue("a", now=store.now())
    store.pause_queue("a", now=store.now())
    assert store.paused_queues() == ["a", "b"]
    assert store.resume_queue("a") is True
    assert store.resume_queue("a") is False
    assert store.paused_queues() == ["b"]


def test_stats_count_by_status_queue_and_type(store: Store) -> None:
    """stats counts every job once under its status, queue and type."""
    in_state(store, JobState.RUNNING)
    enqueue(store, 2, queue="q2")
    enqueue(store, name=OTHER)
    counts = store.stats(now=store.now())
    assert counts["by_status"] == {"running": 1, "pending": 3}
    assert counts["by_queue"] == {"default": {"running": 1, "pending": 1}, "q2": {"pending": 2}}
    assert counts["by_type"] == {NAME: {"running": 1, "pending": 2}, OTHER: {"pending": 1}}
    assert counts["running"] == 1 and counts["oldest_pending_age"] is not None


def test_queue_gauges_count_live_jobs_by_queue_and_state(store: Store) -> None:
    """queue_gauges: live rows only, by (queue, state); the oldest due pending run time, not a later one."""
    in_state(store, JobState.RUNNING)
    in_state(store, JobState.COMPLETED)
    now = store.now()
    enqueue(store, 2, queue="q2", run_at=now - 50)
    enqueue(store, queue="q2", run_at=now - 10)
    enqueue(store, queue="q3", run_at=now + 3600)
    groups = {(g.queue, g.state): (g.count, g.oldest_due) for g in store.queue_gauges(now=now)}
    assert groups == {
        ("default", "running"): (1, None),
        ("q2", "pending"): (3, pytest.approx(now - 50)),
        ("q3", "pending"): (1, None),
    }


# -- workers --------------------------------------------------------------------------------------


def test_a_worker_row_lives_from_register_to_stopped(store: Store) -> None:
    """register, heartbeat (counting held jobs), held_jobs, then mark_stopped: no heartbeat takes after it."""
    store.register_worker(WORKER, host="h", pid=1, queues=["a"], concurrency=2)
    assert store.heartbeat(WORKER) == 0
    job_id = in_state(store, JobState.RUNNING)
    assert store.heartbeat(WORKER, stuck=1) == 1
    [held] = store.held_jobs(WORKER)
    assert (held.id, held.lease, held.request) == (job_id, 1, None)
    [record] = store.list_workers(rescue_after=60.0)
    assert (record.id, record.queues, record.concurrency, record.stuck, record.alive, record.running) == (
        WORKER,
        '["a"]',
        2,
        1,
        True,
        [job_id],
    )
    store.mark_stopped(WORKER)
    assert store.heartbeat(WORKER) is None


def test_a_heartbeat_records_the_workers_pool_report(store: Store) -> None:
    """The pool report (JSON text) written with a heartbeat is read back with the worker; the next one replaces it."""
    store.register_worker(WORKER, host="h", pid=1, queues=None, concurrency=2)
    [fresh] = store.list_workers(rescue_after=60.0)
    assert fresh.pool is None
    report = '{"pool": "processes", "children": [{"pid": 7, "job": null, "tasks": 2, "rss": 1048576}]}'
    store.heartbeat(WORKER, pool=report)
    [record] = store.list_workers(rescue_after=60.0)
    assert record.pool == report
    store.heartbeat(WORKER, pool='{"pool": "threads", "children": []}')
    assert store.list_workers(rescue_after=60.0)[0].pool == '{"pool": "threads", "children": []}'


def test_lost_jobs_finds_a_stopped_workers_running_job_and_rescue_jobs_executes_the_verdict(store: Store) -> None:
    """lost_jobs reports a stopped worker's running job as stored; rescue_jobs writes exactly the kind it is given."""
    store.register_worker(WORKER, host="h", pid=1, queues=None, concurrency=1)
    requeued, failed = in_state(store, JobState.RUNNING), in_state(store, JobState.RUNNING)
    assert store.lost_jobs(rescue_after=60.0, now=store.now()) == []
    store.mark_stopped(WORKER)
    lost = store.lost_jobs(rescue_after=60.0, now=store.now())
    assert [(job.id, job.worker, job.attempt, job.max_retries, job.crashes) for job in lost] == [
        (requeued, WORKER, 1, 3, 0),
        (failed, WORKER, 1, 3, 0),
    ]
    assert store.lost_jobs(rescue_after=60.0, now=store.now(), exclude_worker=WORKER) == []
    verdicts = [Rescue(lost[0], TransitionKind.RESCUE), Rescue(lost[1], TransitionKind.RESCUE_FAIL, poisoned=True)]
    done = store.rescue_jobs(verdicts, now=store.now())
    assert [(item["job_id"], item["status"], item["crashes"]) for item in done] == [
        (requeued, JobState.PENDING, 1),
        (failed, JobState.FAILED, 1),
    ]
    assert "poison pill" in json.loads(store.get(failed).errors or "[]")[-1]["message"]  # type: ignore[union-attr]
    # The fence: the same verdicts again find the jobs no longer running and write nothing.
    assert store.rescue_jobs(verdicts, now=store.now()) == []


def test_rescue_jobs_refuses_a_kind_that_is_not_a_rescue(store: Store) -> None:
    """Only rescue and rescue_fail are rescue writes; anything else is a ValueError and nothing is written."""
    store.register_worker(WORKER, host="h", pid=1, queues=None, concurrency=1)
    job_id = in_state(store, JobState.RUNNING)
    store.mark_stopped(WORKER)
    [lost] = store.lost_jobs(rescue_after=60.0, now=store.now())
    with pytest.raises(ValueError, match="rescue or rescue_fail"):
        store.rescue_jobs([Rescue(lost, TransitionKind.COMPLETE)], now=store.now())
    assert status(store, job_id) == JobState.RUNNING


def test_prune_deletes_only_jobs_finished_before_the_cutoff(store: Store) -> None:
    """prune removes terminal jobs older than the cutoff and nothing unfinished."""
    done = in_state(store, JobState.COMPLETED)
    pending = in_state(store, JobState.PENDING)
    assert store.prune(older_than=store.now() - 3600) == 0
    assert store.prune(older_than=store.now() + 1) == 1
    assert store.get(done) is None and status(store, pending) == JobState.PENDING


# -- pages ----------------------------------------------------------------------------------------


def walk(store: Store, **filters: object) -> list[list[int]]:
    """Every page of a listing, as lists of ids, following the cursor to its end."""
    pages: list[list[int]] = []
    before: int | None = None
    for _ in range(1000):
        page: JobPage = store.page_jobs(before=before, **filters)  # type: ignore[arg-type]
        pages.append([record.id for record in page.items])
        if page.next_cursor is None:
            return pages
        assert before is None or page.next_cursor < before
        before = page.next_cursor
    raise AssertionError("the cursor never ended")


def test_the_cursor_walks_every_row_once_newest_first(store: Store) -> None:
    """Unfiltered pages of 7 visit all 30 jobs once, in descending id order, and then end."""
    ids = enqueue(store, 30)
    pages = walk(store, limit=7)
    assert [len(page) for page in pages] == [7, 7, 7, 7, 2]
    assert [job_id for page in pages for job_id in page] == sorted(ids, reverse=True)


def test_a_filtered_walk_visits_every_match_once_across_windows(store: Store) -> None:
    """With a scan window smaller than the table, pages may be short, but the walk finds each match once."""
    wanted: list[int] = []
    for i in range(12):
        wanted += enqueue(store, name=OTHER)
        enqueue(store, 2 + i % 3)
    pages = walk(store, name=OTHER, limit=4, scan=5)
    assert [job_id for page in pages for job_id in page] == sorted(wanted, reverse=True)
    assert all(len(page) <= 4 for page in pages)


def test_filters_combine(store: Store) -> None:
    """states, name and queue together: only jobs matching all of them."""
    match = in_state(store, JobState.FAILED)
    in_state(store, JobState.COMPLETED)  # other state
    enqueue(store, queue="other")  # other queue
    [other_name] = enqueue(store, name=OTHER)
    store.cancel_job(other_name, now=store.now())  # right state, other name
    page = store.page_jobs(states=[JobState.FAILED, JobState.CANCELLED], name=NAME, queue="default")
    assert ([record.id for record in page.items], page.next_cursor) == ([match], None)


def test_text_matches_name_args_and_errors_ignoring_case(store: Store) -> None:
    """A substring of the name, the arguments or the error history finds the job, whatever its case."""
    failed = in_state(store, JobState.FAILED)
    [by_args] = enqueue(store, args='{"email": "Alice@Example.com"}')
    [by_name] = enqueue(store, name="reports.ALICE_weekly")
    with store.write() as conn:  # type: ignore[attr-defined]
        conn.execute(
            sa.text("UPDATE jobkit_jobs SET errors = :e WHERE id = :id"), {"e": '[{"message": "alice!"}]', "id": failed}
        )
    enqueue(store, args='{"email": "bob@example.com"}')
    assert [r.id for r in store.page_jobs(text="alice").items] == [by_name, by_args, failed]


@pytest.mark.parametrize("wildcard", ["%", "_", "\\"])
def test_text_takes_like_wildcards_literally(store: Store, wildcard: str) -> None:
    """%, _ and backslash in the search text match themselves only (the text is searched as stored)."""
    [literal] = enqueue(store, args=json.dumps({"note": f"50{wildcard}off"}))
    enqueue(store, args=json.dumps({"note": "50Xoff"}))
    enqueue(store, args=json.dumps({"note": "50off"}))
    stored = json.dumps(f"50{wildcard}off")[1:-1]  # a backslash is stored escaped, as JSON writes it
    assert [r.id for r in store.page_jobs(text=stored).items] == [literal]


def test_stage_matches_the_current_progress_stage_exactly(store: Store) -> None:
    """stage finds jobs whose progress names it as the current stage; nested keys and damaged rows do not match."""
    upload, nested, damaged = (in_state(store, JobState.RUNNING) for _ in range(3))
    leases = {job.id: job.lease for job in store.held_jobs(WORKER)}

    def progress(job_id: int, value: str) -> None:
        assert store.write_progress(job_id, worker=WORKER, lease=leases[job_id], progress=value, now=store.now())

    progress(upload, json.dumps({"percent": 10, "stage": "upload", "data": {}}, separators=(",", ":")))
    progress(nested, json.dumps({"percent": 10, "stage": "parse", "data": {"stage": "upload"}}, separators=(",", ":")))
    progress(damaged, '{"stage":"upload", oops')
    assert [r.id for r in store.page_jobs(stage="upload").items] == [upload]
    assert [r.id for r in store.page_jobs(stage="parse").items] == [nested]


def test_an_unknown_state_is_refused(store: Store) -> None:
    """A state filter that names no state is a ValueError, not an empty page."""
    with pytest.raises(ValueError):
        store.page_jobs(states=["finished"])


def test_an_empty_table_has_one_empty_page(store: Store) -> None:
    """No rows: no items and no cursor, filtered or not."""
    assert store.page_jobs() == JobPage([], None)
    assert store.page_jobs(text="x") == JobPage([], None)


def test_worker_and_creation_time_filters(store: Store) -> None:
    """worker finds the jobs a worker holds; since and until bound the creation time."""
    held = in_state(store, JobState.RUNNING)
    [waiting] = enqueue(store)
    assert [r.id for r in store.page_jobs(worker=WORKER).items] == [held]
    created = {r.id: r.created_at for r in store.page_jobs().items}
    cut = created[waiting]
    assert [r.id for r in store.page_jobs(since=cut).items] == [i for i in (waiting, held) if created[i] >= cut]
    assert [r.id for r in store.page_jobs(until=cut).items] == [i for i in (waiting, held) if created[i] < cut]
    assert store.page_jobs(since=created[waiting] + 3600).items == []


# -- the operators' tables: per-minute counts and the audit log


def test_minute_counts_add_up(store: Store) -> None:
    """Counts written twice for one minute and queue are summed; other minutes and queues stay apart."""
    store.add_minute_counts([MinuteCount(6000, "default", 3, 1), MinuteCount(6000, "mail", 1, 0)])
    store.add_minute_counts([MinuteCount(6000, "default", 2, 2), MinuteCount(6060, "default", 1, 0)])
    assert store.minute_counts(since=6000) == [
        MinuteCount(6000, "default", 5, 3),
        MinuteCount(6000, "mail", 1, 0),
        MinuteCount(6060, "default", 1, 0),
    ]
    assert store.minute_counts(since=6090) == [MinuteCount(6060, "default", 1, 0)]  # the minute holding 6090 on


def test_minute_counts_older_than_a_day_go(store: Store) -> None:
    """Writing a minute deletes the minutes more than a day (and a little) before it."""
    store.add_minute_counts([MinuteCount(60, "default", 1, 0)])
    store.add_minute_counts([MinuteCount(60 + 2 * 86_400, "default", 1, 0)])
    assert [c.minute for c in store.minute_counts(since=0)] == [60 + 2 * 86_400]


def test_audit_log_pages_newest_first(store: Store) -> None:
    """Entries come back newest first with what was recorded; ``before`` pages on."""
    for i in range(5):
        store.record_audit(actor="ops", action=f"a{i}", target="q", job_ids=[i, i + 1], outcome="done", now=1000.0 + i)
    first = store.audit_log(limit=3)
    assert [e.action for e in first] == ["a4", "a3", "a2"]
    assert (first[0].actor, first[0].target, json.loads(first[0].job_ids), first[0].outcome, first[0].at) == (
        "ops",
        "q",
        [4, 5],
        "done",
        1004.0,
    )
    assert [e.action for e in store.audit_log(before=first[-1].id)] == ["a1", "a0"]


def test_running_lists_every_running_job_newest_first(store: Store) -> None:
    """running() returns the running jobs only, newest first, with their full rows."""
    older = in_state(store, JobState.RUNNING)
    newer = in_state(store, JobState.RUNNING)
    in_state(store, JobState.COMPLETED)
    enqueue(store)
    found = store.running()
    assert [r.id for r in found] == [newer, older]
    assert all(r.status == JobState.RUNNING and r.worker_id == WORKER for r in found)
    assert [r.id for r in store.running(limit=1)] == [newer]


# -- unique enqueues


def unique_row(
    key: str = "k1", *, args: str = "{}", on_conflict: str = "skip", window: float | None = None
) -> UniqueJob:
    """A unique job due now, holding ``key`` while pending or running."""
    return UniqueJob(
        NewJob(NAME, args, "default", 0, 0.0, 3), key, frozenset({"pending", "running"}), on_conflict, window
    )


def test_enqueue_unique_inserts_once_per_live_key_in_input_order(store: Store) -> None:
    """One row per live key; every later row with it names that row, in input order."""
    now = store.now()
    first, again, other, third = store.enqueue_unique(
        [unique_row("k1"), unique_row("k1"), unique_row("k2"), unique_row("k1")], now=now
    )
    assert (first.duplicate, again.duplicate, other.duplicate, third.duplicate) == (False, True, False, True)
    assert again.id == third.id == first.id != other.id
    assert store.enqueue_unique([unique_row("k1")], now=now) == [(first.id, True)]


def test_a_job_leaving_its_unique_states_frees_the_key(store: Store) -> None:
    """Running still holds the key; failed (outside the states) frees it for a new job."""
    [held] = store.enqueue_unique([unique_row("k1")], now=store.now())
    assert claim(store) == [held.id]
    assert store.enqueue_unique([unique_row("k1")], now=store.now())[0] == (held.id, True)
    assert store.transition(Transition(TransitionKind.FAIL, held.id, WORKER, 1, {"errors": "[]"}), now=store.now())
    fresh = store.enqueue_unique([unique_row("k1")], now=store.now())[0]
    assert not fresh.duplicate and fresh.id != held.id


def test_replace_touches_a_pending_holder_only(store: Store) -> None:
    """replace rewrites a pending holder's args; a running holder is left as it is."""
    [held] = store.enqueue_unique([unique_row("k1", args='{"v": 1}')], now=store.now())
    store.enqueue_unique([unique_row("k1", args='{"v": 2}', on_conflict="replace")], now=store.now())
    record = store.get(held.id)
    assert record is not None and json.loads(record.args) == {"v": 2}
    claim(store)
    store.enqueue_unique([unique_row("k1", args='{"v": 3}', on_conflict="replace")], now=store.now())
    record = store.get(held.id)
    assert record is not None and json.loads(record.args) == {"v": 2}  # running: left as it is


def test_a_window_frees_the_key_once_the_holder_is_older(store: Store) -> None:
    """With a window, the key is held only until the holder is that old."""
    now = store.now()
    [held] = store.enqueue_unique([unique_row("k1", window=3600)], now=now)
    assert store.enqueue_unique([unique_row("k1", window=3600)], now=now + 3599)[0].duplicate
    fresh = store.enqueue_unique([unique_row("k1", window=3600)], now=now + 3601)[0]
    assert not fresh.duplicate and fresh.id != held.id


def test_a_retried_job_gives_up_its_key_when_another_holds_it(store: Store) -> None:
    """retry_job of a failed unique job while a new one holds the key: the retried job runs as a plain job."""
    [old] = store.enqueue_unique([unique_row("k1")], now=store.now())
    claim(store)
    store.transition(Transition(TransitionKind.FAIL, old.id, WORKER, 1, {"errors": "[]"}), now=store.now())
    [new] = store.enqueue_unique([unique_row("k1")], now=store.now())
    assert store.retry_job(old.id, now=store.now())
    assert store.status_of(old.id) == "pending"
    assert store.enqueue_unique([unique_row("k1")], now=store.now())[0] == (new.id, True)


# -- concurrency keys


def keyed(store: Store, key: str, limit: int, *, priority: int = 0) -> int:
    """A pending job holding concurrency key ``key`` (limit ``limit``)."""
    now = store.now()
    [job_id] = store.enqueue(
        [NewJob(NAME, "{}", "default", priority, now, 3)], now=now, keys=[ConcurrencyKey(key, limit)]
    )
    return job_id


def claim_keyed(store: Store, limit: int = 10) -> list[int]:
    """Claim for WORKER with NAME's type keyed; the claimed ids in claim order."""
    jobs = store.claim(worker=WORKER, limit=limit, names=[NAME], queues=None, now=store.now(), keyed=[NAME])
    return [job.id for job in jobs]


def test_a_keyed_claim_takes_each_key_up_to_its_limit_in_claim_order(store: Store) -> None:
    """Per key, the best jobs in claim order up to the limit, counting the key's running jobs."""
    a_low, a_high, a_mid = (keyed(store, "a", 2, priority=p) for p in (5, -1, 0))
    b = keyed(store, "b", 1)
    plain = enqueue(store)[0]
    assert claim_keyed(store) == [a_high, a_mid, b, plain]
    assert claim_keyed(store) == []
    assert store.transition(Transition(TransitionKind.FAIL, a_high, WORKER, 1, {"errors": "[]"}), now=store.now())
    assert claim_keyed(store) == [a_low]
    assert store.key_holders("a") == sorted([a_mid, a_low])


def test_a_claim_without_keyed_types_leaves_keyed_jobs_pending(store: Store) -> None:
    """The plain claim never takes a job with a concurrency key."""
    keyed(store, "a", 5)
    assert claim(store) == []


def test_a_key_crowding_the_head_leaves_one_claim_short_never_the_others_waiting(store: Store) -> None:
    """A key with many jobs at the head fills the ranked window once; full at the next claim, it is skipped."""
    head = [keyed(store, "a", 1) for _ in range(30)]
    other = keyed(store, "b", 1)
    assert claim_keyed(store, limit=2) == [head[0]]
    assert claim_keyed(store, limit=2) == [other]

"""Worker registration, heartbeats, cancel requests, rescue and pruning.

Liveness: on PostgreSQL a heartbeat is stamped with the server's clock and judged against it, so
a worker with a skewed clock can neither rescue a live job nor be rescued while alive. SQLite has
no server clock: each process stamps its heartbeat with its own, and the worker's rescuer judges
a heartbeat by watching it change (:mod:`jobkit._store.liveness`), never by comparing clocks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from jobkit._store.engine import is_transient
from jobkit._store.history import append_error, discard_entry, with_entry
from jobkit._store.liveness import HeartbeatObserver
from jobkit._store.records import WorkerRecord
from jobkit._store.store import Store, lease_sets

log = logging.getLogger("jobkit.store")


def _stamp(store: Store) -> tuple[str, dict[str, Any]]:
    """SQL and bind values for "now" in a heartbeat: the server's clock, or this process's on SQLite."""
    if store.is_postgres:
        return store.db_now, {}
    return ":beat", {"beat": store.process_clock()}


def register_worker(
    store: Store, worker_id: str, host: str, pid: int, queues: list[str] | None, concurrency: int
) -> None:
    """Insert this process's worker row, heartbeat stamped like every later heartbeat."""
    stamp, stamp_params = _stamp(store)
    sql = sa.text(
        f"INSERT INTO jobkit_workers (id, host, pid, queues, concurrency, started_at, heartbeat_at, stuck) "
        f"VALUES (:id, :host, :pid, :queues, :concurrency, {stamp}, {stamp}, 0)"
    )
    params = {
        "id": worker_id,
        "host": host,
        "pid": pid,
        "queues": json.dumps(queues) if queues else None,
        "concurrency": concurrency,
        **stamp_params,
    }

    def run() -> None:
        with store.write() as conn:
            conn.execute(sql, params)

    store._retry(run)


def heartbeat(store: Store, worker_id: str) -> bool:
    """Renew the whole process's lease in one statement; False if the row is gone or stopped."""
    return heartbeat_held(store, worker_id) is not None


def heartbeat_held(store: Store, worker_id: str, stuck: int = 0) -> int | None:
    """Renew the process's lease, record its ``stuck`` thread count, and count the jobs it holds.

    Returns None when the worker row is gone or marked stopped. The count lets an idle
    worker skip the full reconciliation read when it holds nothing.

    The statement runs on the store's heartbeat pool, and on SQLite outside this process's
    writer turns: a big enqueue or a busy completer in the same process cannot hold it up
    (another process's write still makes it wait, up to SQLite's busy timeout).
    """
    stamp, params = _stamp(store)
    sql = sa.text(
        f"UPDATE jobkit_workers SET heartbeat_at = {stamp}, stuck = :stuck WHERE id = :id AND stopped_at IS NULL "
        "RETURNING (SELECT count(*) FROM jobkit_jobs WHERE worker_id = :id AND status = 'running')"
    )
    params.update({"id": worker_id, "stuck": int(stuck)})

    def run() -> int | None:
        if not store.is_postgres:
            params["beat"] = store.process_clock()  # a retry stamps the time it runs
        with store.heartbeat_engine.begin() as conn:
            row = conn.execute(sql, params).first()
        return None if row is None else int(row[0])

    # One quick try: the heartbeat loop itself retries on its own schedule.
    return store._retry_short(run)


def mark_stopped(store: Store, worker_id: str) -> None:
    """Mark a worker stopped; the row is deleted when no running job references it."""

    def run() -> None:
        with store.write() as conn:
            conn.execute(
                sa.text(f"UPDATE jobkit_workers SET stopped_at = {store.db_now} WHERE id = :id"), {"id": worker_id}
            )
            conn.execute(
                sa.text(
                    "DELETE FROM jobkit_workers WHERE id = :id AND NOT EXISTS "
                    "(SELECT 1 FROM jobkit_jobs WHERE worker_id = :id AND status = 'running')"
                ),
                {"id": worker_id},
            )

    store._retry(run)


def held_jobs(store: Store, worker_id: str) -> list[tuple[int, int, str | None]]:
    """(job id, lease, cancel request) of every job the database says this worker holds.

    The worker compares this with what it really runs: a job missing here was
    rescued from under it, a job only here was claimed by a reply that never arrived.
    """
    sql = sa.text("SELECT id, lease, cancel_requested FROM jobkit_jobs WHERE worker_id = :w AND status = 'running'")

    def run() -> list[tuple[int, int, str | None]]:
        with store.read() as conn:
            return [
                (int(r[0]), int(r[1]), None if r[2] is None else str(r[2])) for r in conn.execute(sql, {"w": worker_id})
            ]

    return store._retry_short(run)


def _lost_condition(store: Store) -> str:
    # The worker row is gone, stopped, or its heartbeat is older than :after by the database's clock.
    # A NULL worker_id matches no row, so such a running job counts as lost too.
    return (
        "NOT EXISTS (SELECT 1 FROM jobkit_workers w WHERE w.id = jobkit_jobs.worker_id "
        f"AND w.stopped_at IS NULL AND w.heartbeat_at >= {store.db_now} - :after)"
    )


#: Observation rule (SQLite): the worker row is gone or stopped, or its heartbeat still holds the
#: value the rescuer saw unchanged for rescue_after (:seen; NULL when it saw no live row at all).
_STILL_UNCHANGED = (
    "NOT EXISTS (SELECT 1 FROM jobkit_workers w WHERE w.id = jobkit_jobs.worker_id AND w.stopped_at IS NULL "
    "AND (CAST(:seen AS float) IS NULL OR w.heartbeat_at <> :seen))"
)


@dataclass(slots=True)
class _Plan:
    """What one rescue does to one running job."""

    job_id: int
    worker: str | None
    kind: str
    params: dict[str, Any]
    crashes: int
    minimal: dict[str, Any]


def _plan(row: Any, rescue_after: float, max_crashes: int, now: float, bound_now: float | None, seen: Any) -> _Plan:
    """The rescue of one candidate row, built without ever raising on what the row holds."""
    job_id, worker, lease, attempt, max_retries, crashes, errors = row
    attempt_n, retries_n, crashes_n = _int(attempt), _int(max_retries), _int(crashes) + 1
    message = f"worker {worker} stopped heartbeating while running attempt {attempt}"
    if worker is None:
        message = f"running attempt {attempt} belongs to no worker (worker_id is NULL)"
    if crashes_n >= max_crashes:
        message += f"; failed as a poison pill after {crashes_n} crashes"
        kind = "rescue_fail"
    elif attempt_n > retries_n:
        kind = "rescue_fail"
    else:
        kind = "rescue"
    entry = {"attempt": attempt_n, "type": "WorkerLost", "message": message, "traceback": None, "at": now}
    entry["worker"] = worker
    common = {"id": job_id, "lease": lease, "worker": worker, "after": rescue_after, "seen": seen, "now": bound_now}
    params = {**common, "errors": with_entry(errors if isinstance(errors, str) else None, entry)}
    # If even that write is refused as data (a damaged counter, say), the job is failed with the
    # reason and nothing computed from the row.
    minimal = {**common, "errors": json.dumps([entry])}
    return _Plan(int(job_id), worker, kind, params, crashes_n, minimal)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def rescue(
    store: Store,
    rescue_after: float,
    max_crashes: int,
    now: float,
    limit: int = 500,
    *,
    exclude_worker: str | None = None,
    observer: HeartbeatObserver | None = None,
    margin: float = 0.0,
) -> list[dict[str, Any]]:
    """Return jobs of dead workers to ``pending`` (or end them); safe on many workers at once.

    ``margin`` (SQLite's observer only): how much earlier than ``rescue_after`` of surely observed
    silence a worker may be judged lost; see :class:`~jobkit._store.liveness.HeartbeatObserver`.

    A job is lost when its worker row is gone or stopped, its worker_id is NULL, or its worker's
    heartbeat is stale: on PostgreSQL (and on SQLite without an ``observer``) older than
    ``rescue_after`` by the database's clock; on SQLite with an ``observer``, unchanged for
    ``rescue_after`` of this process's own time. ``exclude_worker``'s own jobs are never taken
    (a worker's busy moment must not lose its live jobs).

    Each update re-checks the lease, the status and the worker's liveness, so a job that
    completed or whose worker heartbeated meanwhile is left alone. A pending cancel, kill,
    discard or pause request is honoured (see ``lease_sets``); each result's ``status`` says
    what the job became. One row that cannot be read or written never stops the others: a
    damaged history is kept as text, and a row whose update fails is written on its own.
    """
    observe = observer is not None and not store.is_postgres
    same_worker = (
        "worker_id IS NOT DISTINCT FROM CAST(:worker AS text)" if store.is_postgres else "worker_id IS :worker"
    )
    alive = _STILL_UNCHANGED if observe else _lost_condition(store)
    not_mine = " AND (worker_id IS NULL OR worker_id <> :exclude)" if exclude_worker is not None else ""
    sets = lease_sets(store.now_sql)
    fence = (
        f"WHERE id = :id AND status = 'running' AND lease = :lease AND {same_worker} AND {alive} RETURNING id, status"
    )
    updates = {kind: sa.text(f"UPDATE jobkit_jobs SET {sets[kind]} {fence}") for kind in ("rescue", "rescue_fail")}
    minimal = sa.text(
        f"UPDATE jobkit_jobs SET status = 'failed', errors = :errors, worker_id = NULL, finished_at = {store.now_sql}, "
        f"updated_at = {store.now_sql}, cancel_requested = NULL {fence}"
    )
    columns = "id, worker_id, lease, attempt, max_retries, crashes, errors"
    bound_now = store.bind_now(now)

    def candidates(conn: sa.Connection) -> list[tuple[Any, Any]]:
        """(row, the heartbeat value judged stale or None) of every lost running job."""
        params: dict[str, Any] = {"after": rescue_after, "limit": limit, "exclude": exclude_worker}
        if not observe:
            select = sa.text(
                f"SELECT {columns} FROM jobkit_jobs WHERE status = 'running' AND {alive}{not_mine} ORDER BY id LIMIT :limit"
            )
            return [(r, None) for r in conn.execute(select, params)]
        assert observer is not None
        beats = [
            (str(r[0]), r[1])
            for r in conn.execute(sa.text("SELECT id, heartbeat_at FROM jobkit_workers WHERE stopped_at IS NULL"))
        ]
        stale = observer.stale(beats, rescue_after, margin)
        live = sorted({worker_id for worker_id, _ in beats} - set(stale))
        select = sa.text(
            f"SELECT {columns} FROM jobkit_jobs WHERE status = 'running' AND (worker_id IS NULL OR worker_id NOT IN :live)"
            f"{not_mine} ORDER BY id LIMIT :limit"
        ).bindparams(sa.bindparam("live", expanding=True))
        return [(r, stale.get(r[1])) for r in conn.execute(select, {**params, "live": live})]

    def write(
        conn: sa.Connection, plan: _Plan, statement: sa.TextClause, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        row = conn.execute(statement, params).first()
        if row is None:
            return None
        status = str(row[1])
        if status == "failed" and plan.kind == "rescue":
            append_error(conn, plan.job_id, discard_entry(now), store.now_sql, bound_now)  # a discard request
        return {"job_id": plan.job_id, "status": status, "worker": plan.worker, "crashes": plan.crashes}

    def plans(conn: sa.Connection) -> list[_Plan]:
        return [_plan(row, rescue_after, max_crashes, now, bound_now, seen) for row, seen in candidates(conn)]

    def all_at_once() -> list[dict[str, Any]]:
        with store.write() as conn:
            done = [write(conn, plan, updates[plan.kind], plan.params) for plan in plans(conn)]
        return [item for item in done if item is not None]

    try:
        return store._retry(all_at_once)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("rescue pass failed as a whole (%s); rescuing row by row", exc)

    # Row by row: each job in a transaction of its own, so one bad row is isolated.
    with store.read() as conn:
        found = plans(conn)
    rescued: list[dict[str, Any]] = []
    for plan in found:
        for statement, params in ((updates[plan.kind], plan.params), (minimal, plan.minimal)):
            try:

                def one(statement: sa.TextClause = statement, params: dict[str, Any] = params) -> dict[str, Any] | None:
                    with store.write() as conn:
                        return write(conn, plan, statement, params)

                item = store._retry(one)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.error("job %s: cannot rescue it (%s)", plan.job_id, exc)
                continue
            if item is not None:
                rescued.append(item)
            break
    return rescued


def prune(store: Store, older_than: float, limit: int = 5000) -> int:
    """Delete terminal jobs finished before ``older_than`` and long-dead idle worker rows."""
    delete_jobs = sa.text(
        "DELETE FROM jobkit_jobs WHERE id IN (SELECT id FROM jobkit_jobs WHERE status IN "
        "('completed', 'failed', 'cancelled') AND finished_at < :before ORDER BY id LIMIT :limit)"
    )
    delete_workers = sa.text(
        f"DELETE FROM jobkit_workers WHERE (stopped_at IS NOT NULL OR heartbeat_at < {store.db_now} - 86400) "
        "AND NOT EXISTS (SELECT 1 FROM jobkit_jobs j WHERE j.worker_id = jobkit_workers.id AND j.status = 'running')"
    )

    def run() -> int:
        with store.write() as conn:
            count = conn.execute(delete_jobs, {"before": older_than, "limit": limit}).rowcount
            conn.execute(delete_workers)
        return int(count or 0)

    return store._retry(run)


def list_workers(store: Store, rescue_after: float) -> list[WorkerRecord]:
    """Every registered worker, with whether it is alive (by the database's clock) and its running jobs."""
    workers_sql = sa.text(
        "SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at, stopped_at, stuck, "
        f"(stopped_at IS NULL AND heartbeat_at >= {store.db_now} - :after) AS alive "
        "FROM jobkit_workers ORDER BY started_at"
    )
    running_sql = sa.text("SELECT worker_id, id FROM jobkit_jobs WHERE status = 'running' ORDER BY id")

    def run() -> list[WorkerRecord]:
        with store.read() as conn:
            records = [_worker_record(r) for r in conn.execute(workers_sql, {"after": rescue_after})]
            by_id = {w.id: w for w in records}
            for worker_id, job_id in conn.execute(running_sql):
                if worker_id in by_id:
                    by_id[worker_id].running.append(int(job_id))
        return records

    return store._retry(run)


def _worker_record(row: Any) -> WorkerRecord:
    record = WorkerRecord(*row[:9])
    record.alive = bool(row[9])
    return record

"""Worker registration, heartbeats, cancel requests, rescue and pruning.

Liveness is always judged with the database's clock (``DB_NOW``), never a
worker's own, so a worker with a skewed clock can neither rescue a live job
nor be rescued while alive.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from jobkit._store.records import WorkerRecord
from jobkit._store.store import Store


def register_worker(
    store: Store, worker_id: str, host: str, pid: int, queues: list[str] | None, concurrency: int
) -> None:
    """Insert this process's worker row, heartbeat stamped with the database's clock."""
    sql = sa.text(
        f"INSERT INTO jobkit_workers (id, host, pid, queues, concurrency, started_at, heartbeat_at) "
        f"VALUES (:id, :host, :pid, :queues, :concurrency, {store.db_now}, {store.db_now})"
    )
    params = {
        "id": worker_id,
        "host": host,
        "pid": pid,
        "queues": json.dumps(queues) if queues else None,
        "concurrency": concurrency,
    }

    def run() -> None:
        with store.write() as conn:
            conn.execute(sql, params)

    store._retry(run)


def heartbeat(store: Store, worker_id: str) -> bool:
    """Renew the whole process's lease in one statement; False if the row is gone or stopped."""
    return heartbeat_held(store, worker_id) is not None


def heartbeat_held(store: Store, worker_id: str) -> int | None:
    """Renew the process's lease and count the jobs the database says it holds, in one statement.

    Returns None when the worker row is gone or marked stopped. The count lets an idle
    worker skip the full reconciliation read when it holds nothing.
    """
    sql = sa.text(
        f"UPDATE jobkit_workers SET heartbeat_at = {store.db_now} WHERE id = :id AND stopped_at IS NULL "
        "RETURNING (SELECT count(*) FROM jobkit_jobs WHERE worker_id = :id AND status = 'running')"
    )

    def run() -> int | None:
        with store.write_one() as conn:
            row = conn.execute(sql, {"id": worker_id}).first()
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
    return (
        "NOT EXISTS (SELECT 1 FROM jobkit_workers w WHERE w.id = jobkit_jobs.worker_id "
        f"AND w.stopped_at IS NULL AND w.heartbeat_at >= {store.db_now} - :after)"
    )


def rescue(store: Store, rescue_after: float, max_crashes: int, now: float, limit: int = 500) -> list[dict[str, Any]]:
    """Return jobs of dead workers to ``pending`` (or ``failed`` when spent); safe on many workers at once.

    Each update re-checks the lease, the status and the worker's liveness, so a
    job that completed or whose worker heartbeated meanwhile is left alone.
    """
    lost = _lost_condition(store)
    select = sa.text(
        "SELECT id, worker_id, lease, attempt, max_retries, crashes, errors FROM jobkit_jobs "
        f"WHERE status = 'running' AND {lost} ORDER BY id LIMIT :limit"
    )
    updates = {
        kind: sa.text(
            f"UPDATE jobkit_jobs SET {sets} WHERE id = :id AND status = 'running' AND lease = :lease "
            f"AND worker_id = :worker AND {lost} RETURNING id"
        )
        for kind, sets in (
            (
                "pending",
                "status = 'pending', run_at = :now, errors = :errors, worker_id = NULL, crashes = crashes + 1, "
                "updated_at = :now, cancel_requested = NULL",
            ),
            (
                "failed",
                "status = 'failed', errors = :errors, finished_at = :now, crashes = crashes + 1, updated_at = :now, "
                "cancel_requested = NULL",
            ),
        )
    }

    def run() -> list[dict[str, Any]]:
        rescued: list[dict[str, Any]] = []
        with store.write() as conn:
            rows = conn.execute(select, {"after": rescue_after, "limit": limit}).all()
            for job_id, worker, lease, attempt, max_retries, crashes, errors in rows:
                history = json.loads(errors) if errors else []
                crashes = int(crashes) + 1
                message = f"worker {worker} stopped heartbeating while running attempt {attempt}"
                if crashes >= max_crashes:
                    message += f"; failed as a poison pill after {crashes} crashes"
                    to = "failed"
                elif int(attempt) > int(max_retries):
                    to = "failed"
                else:
                    to = "pending"
                history.append(
                    {
                        "attempt": int(attempt),
                        "type": "WorkerLost",
                        "message": message,
                        "traceback": None,
                        "at": now,
                        "worker": worker,
                    }
                )
                params = {
                    "id": job_id,
                    "lease": lease,
                    "worker": worker,
                    "after": rescue_after,
                    "errors": json.dumps(history),
                    "now": now,
                }
                if conn.execute(updates[to], params).first() is not None:
                    rescued.append({"job_id": int(job_id), "status": to, "worker": worker, "crashes": crashes})
        return rescued

    return store._retry(run)


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
        "SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at, stopped_at, "
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
    record = WorkerRecord(*row[:8])
    record.alive = bool(row[8])
    return record

"""Admin actions on jobs and queues, each one transaction that is safe against a job changing state meanwhile.

Every statement names the statuses it may move a job from, so an action that
races with the worker either takes effect or reports the status it found. An
action that changes a job notifies waiting handles in the same transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from jobkit._store.events import notify_jobs
from jobkit._store.history import with_entry
from jobkit._store.store import Store, _filters

TERMINAL = ("completed", "failed", "cancelled")


def _first(conn: sa.Connection, sql: str, **params: Any) -> Any:
    return conn.execute(sa.text(sql), params).first()


#: What a request standing on a running job is reported as, and what each request overrides:
#: a stronger request replaces a weaker one, never the other way (kill > discard > cancel > pause).
REQUEST_STATES = {"pause": "pausing", "cancel": "cancelling", "discard": "discarding", "kill": "killing"}
_RANK = ("pause", "cancel", "discard", "kill")


def _weaker(request: str) -> str:
    weaker = ", ".join(f"'{r}'" for r in _RANK[: _RANK.index(request)])
    return f"(cancel_requested IS NULL OR cancel_requested IN ({weaker}))" if weaker else "cancel_requested IS NULL"


def _request(conn: sa.Connection, job_id: int, request: str, now: float | None, now_sql: str) -> str | None:
    """Ask a running job's worker to ``request``; returns the state of the request that now stands, or None."""
    if _first(
        conn,
        f"UPDATE jobkit_jobs SET cancel_requested = :request, updated_at = {now_sql} "
        f"WHERE id = :id AND status = 'running' AND {_weaker(request)} RETURNING id",
        id=job_id,
        now=now,
        request=request,
    ):
        return REQUEST_STATES[request]
    row = _first(conn, "SELECT status, cancel_requested FROM jobkit_jobs WHERE id = :id", id=job_id)
    if row is None:
        return None
    if row[0] == "running" and row[1] in REQUEST_STATES:
        return REQUEST_STATES[str(row[1])]
    return str(row[0])


def _cancel_now_or_ask(store: Store, job_id: int, now: float, request: str) -> str | None:
    def run() -> str | None:
        with store.write() as conn:
            if _first(
                conn,
                "UPDATE jobkit_jobs SET status = 'cancelled', finished_at = :now, updated_at = :now, "
                "worker_id = NULL WHERE id = :id AND status IN ('pending', 'paused') RETURNING id",
                id=job_id,
                now=now,
            ):
                notify_jobs(store, conn, [job_id])
                return "cancelled"
            return _request(conn, job_id, request, store.bind_now(now), store.now_sql)

    return store._retry(run)


def cancel_job(store: Store, job_id: int, now: float) -> str | None:
    """Cancel a job: pending or paused at once; running by asking its worker. Returns the resulting state.

    ``cancelled`` when it took effect, ``cancelling`` when a running job's worker was asked (a
    pending pause request is replaced: cancel wins), ``killing``/``discarding`` when a stronger
    request already stands, the terminal status when it had already ended, None when there is no
    such job. The request survives the attempt's end: a retry, snooze, release or rescue of the
    job ends it ``cancelled`` instead.
    """
    return _cancel_now_or_ask(store, job_id, now, "cancel")


def kill_job(store: Store, job_id: int, now: float) -> str | None:
    """End a job whatever it is doing: pending or paused ones at once (``cancelled``), running ones by
    asking their worker to abandon the attempt now (``killing``; it wins over every other request)."""
    return _cancel_now_or_ask(store, job_id, now, "kill")


def pause_job(store: Store, job_id: int, now: float) -> str | None:
    """Pause a job: a pending one is held at once (``paused``); a running one is asked to stop (``pausing``).

    A running job with a cancel, kill or discard request standing keeps it (pause never overrides
    them): the state of that request is returned.
    """

    def run() -> str | None:
        with store.write() as conn:
            if _first(
                conn,
                "UPDATE jobkit_jobs SET status = 'paused', updated_at = :now WHERE id = :id AND status = 'pending' "
                "RETURNING id",
                id=job_id,
                now=now,
            ):
                notify_jobs(store, conn, [job_id])
                return "paused"
            return _request(conn, job_id, "pause", store.bind_now(now), store.now_sql)

    return store._retry(run)


def resume_job(store: Store, job_id: int, now: float) -> str | None:
    """Put a paused job back to ``pending`` (or withdraw a pause not yet delivered to a running job)."""

    def run() -> str | None:
        with store.write() as conn:
            if _first(
                conn,
                f"UPDATE jobkit_jobs SET status = 'pending', run_at = {store.now_sql}, updated_at = {store.now_sql} "
                "WHERE id = :id AND status = 'paused' RETURNING id",
                id=job_id,
                now=store.bind_now(now),
            ):
                notify_jobs(store, conn, [job_id])
                return "pending"
            if _first(
                conn,
                "UPDATE jobkit_jobs SET cancel_requested = NULL WHERE id = :id AND status = 'running' "
                "AND cancel_requested = 'pause' RETURNING id",
                id=job_id,
            ):
                return "running"
            row = _first(conn, "SELECT status FROM jobkit_jobs WHERE id = :id", id=job_id)
            return None if row is None else str(row[0])

    return store._retry(run)


def retry_job(store: Store, job_id: int, now: float) -> bool:
    """A ``failed`` or ``cancelled`` job back to ``pending`` with fresh retries; its error history is kept."""

    def run() -> bool:
        with store.write() as conn:
            took = _first(
                conn,
                f"UPDATE jobkit_jobs SET status = 'pending', run_at = {store.now_sql}, attempt = 0, crashes = 0, "
                "finished_at = NULL, result = NULL, worker_id = NULL, cancel_requested = NULL, "
                f"updated_at = {store.now_sql} WHERE id = :id AND status IN ('failed', 'cancelled') RETURNING id",
                id=job_id,
                now=store.bind_now(now),
            )
            if took:
                notify_jobs(store, conn, [job_id])
            return bool(took)

    return store._retry(run)


def discard_job(store: Store, job_id: int, now: float, reason: str = "discarded by an operator") -> str | None:
    """Force a job to ``failed``, recording why; returns the resulting state.

    ``failed`` for a pending (including retrying) or paused job, at once, with a Discard entry
    carrying ``reason``; ``discarding`` for a running one, whose worker is asked to end it (it
    ends ``failed`` with a Discard entry, whatever its attempt turns into); ``killing`` when a
    kill already stands; otherwise the job's status (None: no such job).
    """

    def run() -> str | None:
        with store.write() as conn:
            lock = " FOR UPDATE" if store.is_postgres else ""
            row = _first(
                conn,
                f"SELECT errors, attempt FROM jobkit_jobs WHERE id = :id AND status IN ('pending', 'paused'){lock}",
                id=job_id,
            )
            if row is None:
                return _request(conn, job_id, "discard", store.bind_now(now), store.now_sql)
            entry = {"attempt": row[1], "type": "Discard", "message": reason, "traceback": None, "at": now}
            took = _first(
                conn,
                "UPDATE jobkit_jobs SET status = 'failed', errors = :errors, finished_at = :now, updated_at = :now "
                "WHERE id = :id AND status IN ('pending', 'paused') RETURNING id",
                id=job_id,
                now=now,
                errors=with_entry(row[0], entry),
            )
            if took:
                notify_jobs(store, conn, [job_id])
                return "failed"
            return _request(conn, job_id, "discard", store.bind_now(now), store.now_sql)

    return store._retry(run)


def delete_job(store: Store, job_id: int) -> bool:
    """Delete a terminal job with its checkpoint, progress and history."""

    def run() -> bool:
        with store.write() as conn:
            took = _first(
                conn,
                "DELETE FROM jobkit_jobs WHERE id = :id AND status IN ('completed', 'failed', 'cancelled') "
                "RETURNING id",
                id=job_id,
            )
            if took:
                notify_jobs(store, conn, [job_id])
            return bool(took)

    return store._retry(run)


def clear(
    store: Store,
    status: str,
    *,
    finished_before: float | None = None,
    name: str | None = None,
    queue: str | None = None,
) -> int:
    """Delete terminal jobs of one status, optionally only older ones, of one type or queue."""
    if status not in TERMINAL:
        raise ValueError(f"can only clear terminal jobs ({', '.join(TERMINAL)}), not {status!r}")
    where, params = _filters(status=status, name=name, queue=queue)
    if finished_before is not None:
        where += " AND finished_at < :before"
        params["before"] = finished_before
    sql = sa.text(f"DELETE FROM jobkit_jobs {where}")

    def run() -> int:
        with store.write() as conn:
            return int(conn.execute(sql, params).rowcount or 0)

    return store._retry(run)


def retry_failed(store: Store, now: float, *, name: str | None = None, queue: str | None = None) -> int:
    """Every ``failed`` job (of one type or queue) back to ``pending``; returns how many."""
    where, params = _filters(status="failed", name=name, queue=queue)
    params["now"] = store.bind_now(now)
    now_sql = store.now_sql
    sql = sa.text(
        f"UPDATE jobkit_jobs SET status = 'pending', run_at = {now_sql}, attempt = 0, crashes = 0, finished_at = NULL, "
        f"worker_id = NULL, cancel_requested = NULL, updated_at = {now_sql} {where}"
    )

    def run() -> int:
        with store.write() as conn:
            return int(conn.execute(sql, params).rowcount or 0)

    return store._retry(run)


def pause_queue(store: Store, queue: str, now: float) -> None:
    """Stop every worker everywhere from claiming ``queue``; stored, so it survives restarts."""
    if store.is_postgres:
        sql = "INSERT INTO jobkit_queue_pauses (queue, paused_at) VALUES (:q, :now) ON CONFLICT (queue) DO NOTHING"
    else:
        sql = "INSERT OR IGNORE INTO jobkit_queue_pauses (queue, paused_at) VALUES (:q, :now)"

    def run() -> None:
        with store.write() as conn:
            conn.execute(sa.text(sql), {"q": queue, "now": now})

    store._retry(run)


def resume_queue(store: Store, queue: str) -> bool:
    """Let workers claim from ``queue`` again; returns whether it was paused."""

    def run() -> bool:
        with store.write() as conn:
            hit = bool(_first(conn, "DELETE FROM jobkit_queue_pauses WHERE queue = :q RETURNING queue", q=queue))
            store.sql.notify(conn, store.channel, "")
            return hit

    return store._retry(run)


def paused_queues(store: Store) -> list[str]:
    """Names of the paused queues."""

    def run() -> list[str]:
        with store.read() as conn:
            return [str(r[0]) for r in conn.execute(sa.text("SELECT queue FROM jobkit_queue_pauses ORDER BY queue"))]

    return store._retry(run)


def stats(store: Store, now: float) -> dict[str, Any]:
    """Counts by status, by queue and by job type, the oldest due pending job's age, and the running count."""

    def run() -> dict[str, Any]:
        with store.read() as conn:
            rows = conn.execute(
                sa.text("SELECT status, queue, name, COUNT(*) FROM jobkit_jobs GROUP BY status, queue, name")
            ).all()
            oldest = conn.execute(
                sa.text("SELECT MIN(run_at) FROM jobkit_jobs WHERE status = 'pending' AND run_at <= :now"), {"now": now}
            ).scalar()
        by_status: dict[str, int] = {}
        by_queue: dict[str, dict[str, int]] = {}
        by_type: dict[str, dict[str, int]] = {}
        for status, queue, name, count in rows:
            by_status[status] = by_status.get(status, 0) + int(count)
            by_queue.setdefault(queue, {}).setdefault(status, 0)
            by_queue[queue][status] += int(count)
            by_type.setdefault(name, {}).setdefault(status, 0)
            by_type[name][status] += int(count)
        return {
            "by_status": by_status,
            "by_queue": by_queue,
            "by_type": by_type,
            "running": by_status.get("running", 0),
            "oldest_pending_age": None if oldest is None else max(0.0, now - float(oldest)),
        }

    return store._retry(run)

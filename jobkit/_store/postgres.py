"""PostgreSQL's statements: SKIP LOCKED claims, one-statement batch completion, NOTIFY."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from jobkit._store.records import CLAIM_COLUMNS

DB_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"


def _claim_sql(filter_queues: bool) -> sa.TextClause:
    queue_filter = "AND queue = ANY(CAST(:queues AS text[]))" if filter_queues else ""
    # SKIP LOCKED: concurrent workers each take a disjoint set without waiting on each other.
    # The CTE is materialised once, so the LIMIT subquery is not re-run per updated row.
    return sa.text(
        f"""
        WITH picked AS MATERIALIZED (
            SELECT id FROM jobkit_jobs
             WHERE status = 'pending' AND run_at <= :now
               AND name = ANY(CAST(:names AS text[]))
               {queue_filter}
               AND NOT EXISTS (SELECT 1 FROM jobkit_queue_pauses p WHERE p.queue = jobkit_jobs.queue)
             ORDER BY priority, run_at, id
             LIMIT :limit
             FOR UPDATE SKIP LOCKED)
        UPDATE jobkit_jobs AS j
           SET status = 'running', attempt = j.attempt + 1, lease = j.lease + 1, worker_id = :worker,
               started_at = :now, updated_at = :now, cancel_requested = NULL
          FROM picked
         WHERE j.id = picked.id
        RETURNING {", ".join("j." + c.strip() for c in CLAIM_COLUMNS.split(","))}
        """
    )


CLAIM_ALL_QUEUES = _claim_sql(False)
CLAIM_SOME_QUEUES = _claim_sql(True)

# One statement completes a whole batch; the lease is still checked row by row.
COMPLETE_MANY = sa.text(
    """
    UPDATE jobkit_jobs AS j
       SET status = 'completed', result = v.result, finished_at = :now, updated_at = :now,
           cancel_requested = NULL
      FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id,
                   unnest(CAST(:leases AS integer[])) AS lease,
                   unnest(CAST(:results AS text[])) AS result) AS v
     WHERE j.id = v.id AND j.lease = v.lease AND j.worker_id = :worker AND j.status = 'running'
    RETURNING j.id
    """
)

NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")


def claim_params(names: list[str], queues: list[str] | None) -> dict[str, Any]:
    """Bind values for the name and queue filters (text arrays)."""
    params: dict[str, Any] = {"names": names}
    if queues is not None:
        params["queues"] = queues
    return params


def complete_many(conn: sa.Connection, worker: str, now: float, rows: list[tuple[int, int, str]]) -> set[int]:
    """Complete (id, lease, result) rows in one statement; returns the ids whose lease still matched."""
    ids = [r[0] for r in rows]
    leases = [r[1] for r in rows]
    results = [r[2] for r in rows]
    found = conn.execute(
        COMPLETE_MANY, {"ids": ids, "leases": leases, "results": results, "worker": worker, "now": now}
    )
    return {int(r[0]) for r in found}


def notify(conn: sa.Connection, channel: str, payload: str) -> None:
    """Send a NOTIFY inside the current transaction, so it fires only when the caller commits."""
    conn.execute(NOTIFY, {"channel": channel, "payload": payload})

"""PostgreSQL's statements: SKIP LOCKED claims, one-statement batch completion, NOTIFY."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from jobkit._store.records import CLAIM_COLUMNS, NewJob, insert_params

DB_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

#: The current time of statements that decide eligibility (run_at) or record a transition: the
#: caller's ``now`` when it binds one (a fake clock in tests), else the server's clock, so a
#: process whose clock is skewed cannot delay or advance jobs by its skew. statement_timestamp()
#: is stable within a statement, so the planner treats ``run_at <= NOW`` like a constant.
NOW = "COALESCE(CAST(:now AS float8), EXTRACT(EPOCH FROM statement_timestamp())::float8)"


def _claim_sql(filter_queues: bool) -> sa.TextClause:
    queue_filter = "AND queue = ANY(CAST(:queues AS text[]))" if filter_queues else ""
    # SKIP LOCKED: concurrent workers each take a disjoint set without waiting on each other.
    # The CTE is materialised once, so the LIMIT subquery is not re-run per updated row.
    # The pause filter is written as two uncorrelated sub-selects on purpose: as an anti-join the
    # planner guesses it removes nearly every row, and then prefers reading all pending rows and
    # sorting them over walking jobkit_jobs_claim in order, which makes each claim O(pending).
    return sa.text(
        f"""
        WITH picked AS MATERIALIZED (
            SELECT id FROM jobkit_jobs
             WHERE status = 'pending' AND run_at <= {NOW}
               AND name = ANY(CAST(:names AS text[]))
               {queue_filter}
               AND (NOT EXISTS (SELECT 1 FROM jobkit_queue_pauses)
                    OR queue <> ALL (ARRAY(SELECT queue FROM jobkit_queue_pauses)))
             ORDER BY priority, run_at, id
             LIMIT :limit
             FOR UPDATE SKIP LOCKED)
        UPDATE jobkit_jobs AS j
           SET status = 'running', attempt = j.attempt + 1, lease = j.lease + 1, worker_id = :worker,
               started_at = {NOW}, updated_at = {NOW}, cancel_requested = NULL
          FROM picked
         WHERE j.id = picked.id
        RETURNING {", ".join("j." + c.strip() for c in CLAIM_COLUMNS.split(","))}
        """
    )


CLAIM_ALL_QUEUES = _claim_sql(False)
CLAIM_SOME_QUEUES = _claim_sql(True)

# One statement completes a whole batch (the lease is still checked row by row) and tells waiting
# handles which jobs changed. COMPLETE_CHUNK keeps the id list under NOTIFY's 8000-byte payload cap.
COMPLETE_MANY = sa.text(
    f"""
    WITH done AS (
        UPDATE jobkit_jobs AS j
           SET status = 'completed', result = v.result, finished_at = {NOW}, updated_at = {NOW},
               cancel_requested = NULL
          FROM unnest(CAST(:ids AS bigint[]), CAST(:leases AS integer[]), CAST(:results AS text[]))
               AS v(id, lease, result)
         WHERE j.id = v.id AND j.lease = v.lease AND j.worker_id = :worker AND j.status = 'running'
        RETURNING j.id),
    -- One notification for the batch, only when something completed and a channel was given.
    note AS (
        SELECT pg_notify(:channel, string_agg(CAST(id AS text), ',')) AS sent
          FROM done WHERE :channel <> '' HAVING count(*) > 0)
    SELECT done.id FROM done LEFT JOIN note ON true
    """
)
COMPLETE_CHUNK = 500

NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")

_COLUMNS = "name, queue, priority, status, args, run_at, created_at, max_retries, attempt, crashes, lease"

# Insert and wake in one statement; the notification is queued in the statement's transaction.
INSERT_ONE = sa.text(
    f"""
    WITH ins AS (
        INSERT INTO jobkit_jobs ({_COLUMNS})
        VALUES (:name, :queue, :priority, 'pending', :args, COALESCE(CAST(:run_at AS float8), {NOW}), {NOW},
                :max_retries, 0, 0, 0)
        RETURNING id)
    SELECT id, pg_notify(:channel, :payload) FROM ins
    """
)

# A whole chunk as one JSON array of [name, queue, priority, args, run_at, max_retries] rows: one
# parameter, no per-row SQL text, and json.dumps is far cheaper than adapting six Python lists to
# PostgreSQL arrays (psycopg escapes text array elements one by one in Python). A null run_at
# means "now" (the server's clock; see insert_many).
INSERT_MANY = sa.text(
    f"""
    INSERT INTO jobkit_jobs ({_COLUMNS})
    SELECT r.v ->> 0, r.v ->> 1, CAST(r.v ->> 2 AS integer), 'pending', r.v ->> 3,
           COALESCE(CAST(r.v ->> 4 AS float8), {NOW}), {NOW}, CAST(r.v ->> 5 AS integer), 0, 0, 0
      FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS r(v, n)
     ORDER BY r.n
    RETURNING id
    """
)
INSERT_CHUNK = 5000


def insert_one(
    row: NewJob, now: float, channel: str, payload: str, *, server_clock: bool = False
) -> tuple[sa.TextClause, dict[str, Any]]:
    """The statement and parameters that insert one job and notify ``channel``.

    ``server_clock``: a job due now (run_at <= now) gets the server's clock as its run_at, and
    created_at is the server's too; a later run_at is kept as given.
    """
    params = {**insert_params(row, now), "channel": channel, "payload": payload}
    if server_clock:
        if row.run_at <= now:
            params["run_at"] = None
        params["now"] = None
    return INSERT_ONE, params


def insert_many(
    rows: Sequence[NewJob], now: float, *, server_clock: bool = False
) -> Iterator[tuple[sa.TextClause, dict[str, Any]]]:
    """One JSON-array insert per chunk of ``INSERT_CHUNK`` rows; ``server_clock`` as in :func:`insert_one`."""
    for start in range(0, len(rows), INSERT_CHUNK):
        part = rows[start : start + INSERT_CHUNK]
        if server_clock:
            packed = json.dumps(
                [
                    [r.name, r.queue, r.priority, r.args, None if r.run_at <= now else r.run_at, r.max_retries]
                    for r in part
                ]
            )
        else:
            packed = json.dumps([[r.name, r.queue, r.priority, r.args, r.run_at, r.max_retries] for r in part])
        yield INSERT_MANY, {"rows": packed, "now": None if server_clock else now}


def claim_params(names: list[str], queues: list[str] | None) -> dict[str, Any]:
    """Bind values for the name and queue filters (text arrays)."""
    params: dict[str, Any] = {"names": names}
    if queues is not None:
        params["queues"] = queues
    return params


def complete_many_params(
    worker: str, now: float | None, rows: list[tuple[int, int, str]], events_channel: str = ""
) -> Iterator[dict[str, Any]]:
    """Bind values of :data:`COMPLETE_MANY`, one set per chunk of ``COMPLETE_CHUNK`` rows."""
    for start in range(0, len(rows), COMPLETE_CHUNK):
        part = rows[start : start + COMPLETE_CHUNK]
        yield {
            "ids": [r[0] for r in part],
            "leases": [r[1] for r in part],
            "results": [r[2] for r in part],
            "worker": worker,
            "now": now,
            "channel": events_channel,
        }


def notify(conn: sa.Connection, channel: str, payload: str) -> None:
    """Send a NOTIFY inside the current transaction, so it fires only when the caller commits."""
    conn.execute(NOTIFY, {"channel": channel, "payload": payload})

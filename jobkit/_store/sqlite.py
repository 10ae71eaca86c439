"""SQLite's statements: WAL, BEGIN IMMEDIATE, and UPDATE … RETURNING for the claim."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from jobkit._store.records import CLAIM_COLUMNS, NewJob, insert_params

#: The database's clock in epoch seconds (julianday has millisecond resolution).
DB_NOW = "((julianday('now') - 2440587.5) * 86400.0)"

#: The current time of statements that take it from the caller: julianday('now') would be this
#: process's clock as well, so the caller's clock (a test's fake clock) is used as it is.
NOW = ":now"


def _claim_sql(filter_queues: bool) -> sa.TextClause:
    queue_filter = "AND queue IN (SELECT value FROM json_each(:queues))" if filter_queues else ""
    # SQLite has no SKIP LOCKED: the transaction was opened with BEGIN IMMEDIATE, which holds
    # the write lock from the start, so this select-and-update is atomic across processes.
    return sa.text(
        f"""
        UPDATE jobkit_jobs
           SET status = 'running', attempt = attempt + 1, lease = lease + 1, worker_id = :worker,
               started_at = :now, updated_at = :now, cancel_requested = NULL
         WHERE id IN (
               SELECT id FROM jobkit_jobs
                WHERE status = 'pending' AND run_at <= :now
                  AND name IN (SELECT value FROM json_each(:names))
                  {queue_filter}
                  AND queue NOT IN (SELECT queue FROM jobkit_queue_pauses)
                ORDER BY priority, run_at, id
                LIMIT :limit)
        RETURNING {CLAIM_COLUMNS}
        """
    )


CLAIM_ALL_QUEUES = _claim_sql(False)
CLAIM_SOME_QUEUES = _claim_sql(True)

# One statement completes a whole batch, the lease still checked row by row. The batch is one
# JSON array of [id, lease, result] unpacked by json_each (UPDATE … FROM needs SQLite 3.33+,
# RETURNING 3.35+, which the claim already needs).
COMPLETE_MANY = sa.text(
    """
    UPDATE jobkit_jobs
       SET status = 'completed', result = v.result, finished_at = :now, updated_at = :now, cancel_requested = NULL
      FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease, value ->> 2 AS result FROM json_each(:rows)) AS v
     WHERE jobkit_jobs.id = v.id AND jobkit_jobs.lease = v.lease
       AND jobkit_jobs.worker_id = :worker AND jobkit_jobs.status = 'running'
    RETURNING jobkit_jobs.id
    """
)


_COLUMNS = "name, queue, priority, status, args, run_at, created_at, max_retries, attempt, crashes, lease"

INSERT_ONE = sa.text(
    f"INSERT INTO jobkit_jobs ({_COLUMNS}) "
    "VALUES (:name, :queue, :priority, 'pending', :args, :run_at, :now, :max_retries, 0, 0, 0) RETURNING id"
)

# A whole chunk as one JSON array parameter, unpacked by json_each: no per-row bind parameters,
# so SQLite's limit on bound variables does not cap the chunk.
INSERT_MANY = sa.text(
    f"""
    INSERT INTO jobkit_jobs ({_COLUMNS})
    SELECT value ->> 0, value ->> 1, value ->> 2, 'pending', value ->> 3, value ->> 4, :now, value ->> 5, 0, 0, 0
      FROM json_each(:rows)
     ORDER BY key
    RETURNING id
    """
)
INSERT_CHUNK = 5000


def insert_one(row: NewJob, now: float, channel: str, payload: str) -> tuple[sa.TextClause, dict[str, Any]]:
    """The statement and parameters that insert one job (other processes notice via data_version)."""
    params = insert_params(row, now)
    return INSERT_ONE, params


def insert_many(rows: Sequence[NewJob], now: float) -> Iterator[tuple[sa.TextClause, dict[str, Any]]]:
    """One JSON-array insert per chunk of ``INSERT_CHUNK`` rows."""
    for start in range(0, len(rows), INSERT_CHUNK):
        part = rows[start : start + INSERT_CHUNK]
        # ensure_ascii=False: text goes in as UTF-8 and ->> copies it out, so no \u escape is ever
        # decoded by SQLite (which would turn a lone surrogate into invalid UTF-8 and a \u0000 into a
        # truncated name). Names are validated before this (no NUL, no surrogates), and the args are
        # JSON text already, so SQLite stores exactly what PostgreSQL stores.
        packed = json.dumps(
            [[r.name, r.queue, r.priority, r.args, r.run_at, r.max_retries] for r in part], ensure_ascii=False
        )
        yield INSERT_MANY, {"rows": packed, "now": now}


def claim_params(names_json: str, queues_json: str | None) -> dict[str, Any]:
    """Bind values for the name and queue filters (JSON arrays read by json_each)."""
    params: dict[str, Any] = {"names": names_json}
    if queues_json is not None:
        params["queues"] = queues_json
    return params


def complete_many_params(
    worker: str, now: float, rows: list[tuple[int, int, str]], events_channel: str = ""
) -> Iterator[dict[str, Any]]:
    """Bind values of :data:`COMPLETE_MANY`: the whole batch as one JSON array.

    SQLite has no NOTIFY, so ``events_channel`` is ignored: waiting handles poll.
    """
    packed = json.dumps([[job_id, lease, result] for job_id, lease, result in rows])
    yield {"rows": packed, "worker": worker, "now": now}


def notify(conn: sa.Connection, channel: str, payload: str) -> None:
    """SQLite has no NOTIFY: other processes see the change through PRAGMA data_version."""

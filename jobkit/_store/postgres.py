"""PostgreSQL's dialect: SKIP LOCKED claims, one-statement batch completion, NOTIFY, the server's clock.

Three pools: write transactions, an autocommit pool for single statements and reads (one round
trip instead of BEGIN, statement, COMMIT), and a hot-path pool for the claim and completions
whose session skips the WAL flush (see :data:`HOT_PATH_SESSION_OPTIONS`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect

from jobkit._store import schema
from jobkit._store.dialect import Dialect, Engines
from jobkit._store.engine import driver_connection
from jobkit._store.keys_sql import keyed_candidates
from jobkit._store.listen_postgres import PostgresListener
from jobkit._store.notify import Listener
from jobkit._store.records import (
    CLAIM_COLUMNS,
    COMPLETION_COLUMNS,
    INSERT_COLUMNS,
    PACKED_COLUMNS,
    Completion,
    NewJob,
    insert_params,
    packed_values,
)
from jobkit._store.schema import IS_SCHEDULED, IS_STAGED
from jobkit._store.statements import COMPLETED, PENDING, RUNNING, Statement

#: The current time of statements that decide eligibility (run_at) or record a transition: the
#: caller's ``now`` when it binds one (a fake clock in tests), else the server's clock, so a
#: process whose clock is skewed cannot delay or advance jobs by its skew. statement_timestamp()
#: is stable within a statement, so the planner treats ``run_at <= NOW`` like a constant.
NOW = "COALESCE(CAST(:now AS float8), EXTRACT(EPOCH FROM statement_timestamp())::float8)"

#: Rows per bulk-insert statement.
INSERT_CHUNK = 5000
#: Rows per batch-completion statement: keeps the NOTIFY payload of their ids under 8000 bytes.
COMPLETE_CHUNK = 500

#: Session settings for the worker's hot-path connections, which run only the claim and batches
#: of completions.
#:
#: - The claim must walk the claim index in priority order and stop after LIMIT rows. Right after
#:   a bulk enqueue the table's statistics are stale, and the planner then prefers reading every
#:   pending row and sorting them, which makes each claim cost O(pending).
#: - Neither statement needs to wait for its WAL flush: if PostgreSQL crashes before the flush,
#:   the claim or the completion is lost, the job is found pending or rescued, and it runs again,
#:   which at-least-once delivery allows. Enqueues and every other write stay synchronous.
#: - No JIT: disabling sorts prices the claim's small in-memory sort (of at most twice LIMIT rows)
#:   above jit_above_cost, and compiling it takes the server most of a second per claim.
HOT_PATH_SESSION_OPTIONS = "-c enable_sort=off -c enable_bitmapscan=off -c synchronous_commit=off -c jit=off"

_CONNECT_ARGS: dict[str, Any] = {
    # Dead peers are noticed in seconds rather than after the kernel's two-hour default.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "connect_timeout": 10,
}

_FENCE = ("id", "lease")


_PG = PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialect classes are untyped


def _sql_type(column: str) -> str:
    """The PostgreSQL type of a jobs column, as the schema declares it."""
    return str(schema.jobs.c[column].type.compile(dialect=_PG))


def _from_json(column: str, value: str) -> str:
    """``value`` (JSON text of one field) as the column's type; text columns take it as it is."""
    if isinstance(schema.jobs.c[column].type, sa.String):
        return value  # assigned to the column with its own length check, never truncated by a cast
    return f"CAST({value} AS {_sql_type(column)})"


def _claim_sql(filter_queues: bool) -> sa.TextClause:
    queue_filter = "AND queue = ANY(CAST(:queues AS text[]))" if filter_queues else ""
    claimable = f"""
               AND concurrency_key IS NULL
               AND name = ANY(CAST(:names AS text[]))
               {queue_filter}
               AND (NOT EXISTS (SELECT 1 FROM jobkit_queue_pauses)
                    OR queue <> ALL (ARRAY(SELECT queue FROM jobkit_queue_pauses)))"""
    # One statement stages and claims, so staging costs no statement of its own:
    # - due: rows written for later that have fallen due, read off the head of the scheduled index.
    # - ready: the best :limit staged rows, walked in order along the claim index. SKIP LOCKED:
    #   concurrent workers take disjoint sets without waiting on each other.
    # - picked: the best :limit of the ready and the due rows together, in claim order, so a row
    #   that fell due since the last claim competes on priority at once. Two sources rather than
    #   one OR of their conditions, which would lose the partial claim index.
    # - the due rows not picked are staged; the picked ones are claimed. The two UPDATEs touch
    #   disjoint rows: PostgreSQL must never update one row twice in a statement.
    # The pause filter is written as two uncorrelated sub-selects on purpose: as an anti-join the
    # planner guesses it removes nearly every row, and then prefers reading all pending rows and
    # sorting them over walking jobkit_jobs_claim in order, which makes each claim O(pending).
    # MATERIALIZED: each CTE runs once, not once per row of the UPDATE.
    return sa.text(
        f"""
        WITH due AS MATERIALIZED (
            SELECT id FROM jobkit_jobs
             WHERE {IS_SCHEDULED} AND run_at <= {NOW}
             ORDER BY run_at
             LIMIT :stage_limit
             FOR UPDATE SKIP LOCKED),
        ready AS MATERIALIZED (
            SELECT id, priority, run_at FROM jobkit_jobs
             WHERE {IS_STAGED} AND run_at <= {NOW} {claimable}
             ORDER BY priority, run_at, id
             LIMIT :limit
             FOR UPDATE SKIP LOCKED),
        picked AS MATERIALIZED (
            SELECT id FROM (
                SELECT id, priority, run_at FROM ready
                UNION ALL
                SELECT id, priority, run_at FROM jobkit_jobs
                 WHERE id IN (SELECT id FROM due) {claimable}
            ) AS candidates
             ORDER BY priority, run_at, id
             LIMIT :limit),
        staged AS (
            UPDATE jobkit_jobs SET staged = TRUE
             WHERE id IN (SELECT id FROM due) AND id NOT IN (SELECT id FROM picked))
        UPDATE jobkit_jobs AS j
           SET status = {RUNNING}, attempt = j.attempt + 1, lease = j.lease + 1, worker_id = :worker,
               started_at = {NOW}, updated_at = {NOW}, cancel_requested = NULL, staged = TRUE
          FROM picked
         WHERE j.id = picked.id
        RETURNING {", ".join("j." + c for c in CLAIM_COLUMNS)}
        """
    )


def _keyed_claim_sql(filter_queues: bool) -> sa.TextClause:
    queue_filter = "AND c.queue = ANY(CAST(:queues AS text[]))" if filter_queues else ""
    filters = f"""AND c.name = ANY(CAST(:keyed AS text[]))
                       {queue_filter}
                       AND (NOT EXISTS (SELECT 1 FROM jobkit_queue_pauses)
                            OR c.queue <> ALL (ARRAY(SELECT queue FROM jobkit_queue_pauses)))"""
    # Jobs with a concurrency key (keys_sql.py). The count must see every other keyed claim that
    # committed, so keyed claims take turns on one advisory lock (keyed_lock, a statement of its
    # own: a statement's snapshot is taken before it could wait for the lock). No SKIP LOCKED: the
    # plain claim never takes keyed rows, and an operator's concurrent write is seen by the
    # re-checked status.
    return sa.text(
        f"""
        UPDATE jobkit_jobs AS j
           SET status = {RUNNING}, attempt = j.attempt + 1, lease = j.lease + 1, worker_id = :worker,
               started_at = {NOW}, updated_at = {NOW}, cancel_requested = NULL, staged = TRUE
          FROM ({keyed_candidates(NOW, filters)}) AS picked
         WHERE j.id = picked.id AND j.status = {PENDING}
        RETURNING {", ".join("j." + c for c in CLAIM_COLUMNS)}
        """
    )


# One statement completes a whole batch (the lease is still checked row by row) and tells waiting
# handles which jobs changed. Each Completion field arrives as one array parameter of its column's type.
_COMPLETE_MANY = sa.text(
    f"""
    WITH done AS (
        UPDATE jobkit_jobs AS j
           SET status = {COMPLETED}, {", ".join(f"{c} = v.{c}" for c in COMPLETION_COLUMNS if c not in _FENCE)},
               finished_at = {NOW}, updated_at = {NOW}, cancel_requested = NULL
          FROM unnest({", ".join(f"CAST(:{c} AS {_sql_type(c)}[])" for c in COMPLETION_COLUMNS)})
               AS v({", ".join(COMPLETION_COLUMNS)})
         WHERE {" AND ".join(f"j.{c} = v.{c}" for c in _FENCE)} AND j.worker_id = :worker AND j.status = {RUNNING}
        RETURNING j.id),
    -- One notification for the batch, only when something completed and a channel was given.
    note AS (
        SELECT pg_notify(:channel, string_agg(CAST(id AS text), ',')) AS sent
          FROM done WHERE :channel <> '' HAVING count(*) > 0)
    SELECT done.id FROM done LEFT JOIN note ON true
    """
)

_INSERTED = ", ".join(INSERT_COLUMNS)


def _bound(column: str) -> str:
    # A NULL run_at means "now": the server's clock under db_clock (see insert_one).
    return f"COALESCE(CAST(:run_at AS float8), {NOW})" if column == "run_at" else f":{column}"


def _packed(column: str, index: int) -> str:
    value = _from_json(column, f"r.v ->> {index}")
    # Under db_clock a row due by the caller's clock (run_at <= :due) gets the server's clock
    # instead, as insert_one does; without it :due is NULL and every run_at is kept.
    return f"CASE WHEN {value} <= CAST(:due AS float8) THEN {NOW} ELSE {value} END" if column == "run_at" else value


# Insert and wake in one statement; the notification is queued in the statement's transaction.
_INSERT_ONE = sa.text(
    f"""
    WITH ins AS (
        INSERT INTO jobkit_jobs ({_INSERTED}, status, staged, created_at)
        VALUES ({", ".join(_bound(c) for c in INSERT_COLUMNS)}, {PENDING}, {_bound("run_at")} <= {NOW}, {NOW})
        RETURNING id)
    SELECT id, pg_notify(:channel, :payload) FROM ins
    """
)

# A whole chunk as one JSON array of NewJob rows: one parameter, no per-row SQL text, and
# json.dumps is far cheaper than adapting one Python list per column to PostgreSQL arrays
# (psycopg escapes text array elements one by one in Python).
_INSERT_MANY = sa.text(
    f"""
    INSERT INTO jobkit_jobs ({", ".join(PACKED_COLUMNS)}, status, staged, created_at)
    SELECT {", ".join(_packed(c, i) for i, c in enumerate(PACKED_COLUMNS))}, {PENDING},
           {_packed("run_at", PACKED_COLUMNS.index("run_at"))} <= {NOW}, {NOW}
      FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS r(v, n)
     ORDER BY r.n
    RETURNING id
    """
)

_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")

#: NOTIFY payloads must stay under 8000 bytes; job ids are sent comma-separated in chunks below this.
MAX_PAYLOAD = 7000


def id_payloads(job_ids: Iterable[int]) -> Iterator[str]:
    """Comma-separated job ids, split into NOTIFY-sized payloads."""
    chunk: list[str] = []
    size = 0
    for job_id in job_ids:
        text = str(job_id)
        if chunk and size + len(text) + 1 > MAX_PAYLOAD:
            yield ",".join(chunk)
            chunk, size = [], 0
        chunk.append(text)
        size += len(text) + 1
    if chunk:
        yield ",".join(chunk)


class PostgresDialect(Dialect):
    """Every statement jobkit runs on PostgreSQL that differs from SQLite's."""

    name = "postgresql"
    db_now = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
    now = NOW
    #: Heartbeats carry the server's clock and are judged by it, whatever each process's clock says.
    beat = db_now
    server_clock = True
    notifies_enqueues = True
    same_worker = "worker_id IS NOT DISTINCT FROM CAST(:worker AS text)"
    # The cast types the NULL bound before the first fire (IS NOT DISTINCT FROM needs a type).
    same_last_fire = "last_fire_at IS NOT DISTINCT FROM CAST(:expected AS float8)"
    #: Writers run concurrently here: lock the row that the following UPDATE decides on.
    for_update = " FOR UPDATE"
    insert_pause = sa.text(
        "INSERT INTO jobkit_queue_pauses (queue, paused_at) VALUES (:q, :now) ON CONFLICT (queue) DO NOTHING"
    )

    claim_all = _claim_sql(False)
    claim_some = _claim_sql(True)
    keyed_all = _keyed_claim_sql(False)
    keyed_some = _keyed_claim_sql(True)
    #: Keyed claims take turns across every process (see _keyed_claim_sql).
    keyed_lock = sa.text("SELECT pg_advisory_xact_lock(7305092184)")
    #: The claim stages as it claims (one statement, see _claim_sql).
    stage_statement = None
    complete_statement = _COMPLETE_MANY
    insert_one_statement = _INSERT_ONE
    insert_many_statement = _INSERT_MANY

    def engines(self, url: str) -> Engines:
        # No pre-ping: it would double the round trips of every short transaction. A dead pooled
        # connection fails its statement instead, is invalidated, and the store retries the call.
        main = sa.create_engine(
            url, hide_parameters=True, pool_size=8, max_overflow=32, connect_args=dict(_CONNECT_ARGS)
        )
        # Single statements run in autocommit: a pool of its own whose connections stay in it,
        # since toggling the mode on shared connections would cost on every checkout.
        single = _autocommit(url, pool_size=4, max_overflow=16)
        return Engines(
            main=main, single=single, hot=_hot_path(url), heartbeat=_autocommit(url, pool_size=1, max_overflow=1)
        )

    def writer_turns(self) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def contains_text(self, column: str, param: str) -> str:
        # LIKE is case-sensitive here; ILIKE ignores case as SQLite's LIKE does.
        return f"{column} ILIKE :{param} ESCAPE '\\'"

    @contextlib.contextmanager
    def read(self, engines: Engines) -> Iterator[sa.Connection]:
        # Under READ COMMITTED every statement sees its own snapshot either way, so autocommit
        # loses no consistency and saves the BEGIN and COMMIT round trips.
        with engines.single.connect() as conn:
            yield conn

    def driver(self, engine: sa.Engine) -> AbstractContextManager[Any]:
        return driver_connection(engine, immediate=False)

    def driver_text(self, statement: sa.TextClause, engine: sa.Engine) -> str:
        return str(statement.compile(dialect=engine.dialect))

    def claim(self, names: Sequence[str], queues: Sequence[str] | None) -> Statement:
        # The name and queue filters are text arrays.
        if queues:
            return self.claim_some, {"names": list(names), "queues": list(queues)}
        return self.claim_all, {"names": list(names)}

    def claim_keyed(self, keyed: Sequence[str], queues: Sequence[str] | None) -> Statement:
        if queues:
            return self.keyed_some, {"keyed": list(keyed), "queues": list(queues)}
        return self.keyed_all, {"keyed": list(keyed)}

    def insert_one(self, row: NewJob, *, now: float, channel: str, payload: str, server_clock: bool) -> Statement:
        params = {**insert_params(row), "now": now, "channel": channel, "payload": payload}
        if server_clock:
            # A job due now gets the server's clock as its run_at, and created_at is the server's
            # too; a later run_at is kept as given.
            if row.run_at <= now:
                params["run_at"] = None
            params["now"] = None
        return self.insert_one_statement, params

    def insert_many(self, rows: Sequence[NewJob], *, now: float, server_clock: bool) -> Iterator[Statement]:
        for start in range(0, len(rows), INSERT_CHUNK):
            packed = json.dumps([packed_values(r) for r in rows[start : start + INSERT_CHUNK]])
            if server_clock:
                yield self.insert_many_statement, {"rows": packed, "now": None, "due": now}
            else:
                yield self.insert_many_statement, {"rows": packed, "now": now, "due": None}

    def complete_many(
        self, worker: str, now: float | None, rows: Sequence[Completion], channel: str = ""
    ) -> Iterator[Statement]:
        for start in range(0, len(rows), COMPLETE_CHUNK):
            part = rows[start : start + COMPLETE_CHUNK]
            params: dict[str, Any] = {"worker": worker, "now": now, "channel": channel}
            for i, column in enumerate(COMPLETION_COLUMNS):
                params[column] = [r[i] for r in part]
            yield self.complete_statement, params

    def notify(self, conn: sa.Connection, channel: str, payload: str) -> None:
        """Send a NOTIFY inside the current transaction, so it fires only when the caller commits."""
        conn.execute(_NOTIFY, {"channel": channel, "payload": payload})

    def notify_jobs(self, conn: sa.Connection, channel: str, job_ids: Iterable[int]) -> None:
        for payload in id_payloads(sorted(set(job_ids))):
            conn.execute(_NOTIFY, {"channel": channel, "payload": payload})

    def channel(self, scalar: Callable[[str], Any]) -> str:
        # NOTIFY channels are database-wide; a schema of its own gets a channel of its own.
        schema_name = scalar("SELECT current_schema()") or "public"
        return "jobkit" if schema_name == "public" else f"jobkit_{schema_name}"[:63]

    def listener(self, url: sa.URL, *, channel: str, events_channel: str) -> Listener:
        # psycopg takes the URL as a libpq URI once SQLAlchemy's driver suffix is dropped.
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresListener(conninfo, channel, events_channel)

    def lock_migrations(self, conn: sa.Connection) -> None:
        # Many workers may start at once: one migrates, the others wait, then see head.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7305092183)")

    def beat_params(self, process_clock: Callable[[], float]) -> dict[str, Any]:
        return {}

    def checkpoint(self, engine: sa.Engine, turns: AbstractContextManager[Any]) -> bool:
        """Nothing to do: PostgreSQL checkpoints its own WAL."""
        return True

    def observing(self, observer: Any) -> Any:
        """Always the server's clock: it is one clock for every process."""
        return None


def _autocommit(url: str, **pool: int) -> sa.Engine:
    return sa.create_engine(
        url, isolation_level="AUTOCOMMIT", connect_args=dict(_CONNECT_ARGS), hide_parameters=True, **pool
    )


def _hot_path(url: str) -> sa.Engine:
    """A small autocommit engine for the claim and completion statements; see HOT_PATH_SESSION_OPTIONS."""
    parsed = sa.engine.make_url(url)
    # Keep the URL's own session options (a search_path, say): connect_args would replace them.
    given = parsed.query.get("options")
    given = " ".join(given) if isinstance(given, tuple) else given
    options = f"{given} {HOT_PATH_SESSION_OPTIONS}" if given else HOT_PATH_SESSION_OPTIONS
    return sa.create_engine(
        parsed.difference_update_query(["options"]),
        isolation_level="AUTOCOMMIT",
        pool_size=2,
        max_overflow=8,
        hide_parameters=True,
        connect_args={**_CONNECT_ARGS, "options": options},
    )

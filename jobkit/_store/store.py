"""The Store: every statement jobkit runs, behind one class; the only SQLAlchemy user.

Each public method is one transaction, retried as a whole on transient errors
(a locked SQLite file, a dropped PostgreSQL connection). Writes on a running
job are fenced: they match the job's lease ``(worker_id, lease)`` and report
whether they took, so a stale attempt can never change a row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from jobkit._store import postgres, sqlite
from jobkit._store.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    call_with_retry,
    create_engine,
    create_hot_path_engine,
    driver_connection,
)
from jobkit._store.history import append_error, discard_entry
from jobkit._store.liveness import HeartbeatObserver
from jobkit._store.records import ClaimedJob, JobRecord, NewJob

log = logging.getLogger("jobkit.store")

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"

#: How long an idle WAL checkpoint waits for other connections before giving up until next time.
CHECKPOINT_BUSY_TIMEOUT_MS = 200
VERSION_TABLE = "jobkit_alembic_version"

JOB_COLUMNS = (
    "id, name, queue, priority, status, args, run_at, created_at, attempt, max_retries, worker_id, "
    "started_at, finished_at, result, errors, progress, checkpoint, cancel_requested, crashes, lease, updated_at"
)

#: Requests (jobkit_jobs.cancel_requested) that end a job: the operator's word is final, so a write
#: that would put the job back to pending (retry, snooze, release, a rescue) or hold it (pause)
#: ends it instead. 'discard' ends it as failed (the store appends a Discard entry), the others as
#: cancelled. A pending 'pause' turns a requeue into paused. The UPDATE's SET expressions all see
#: the row as it was, so each CASE reads the request that the same statement clears.
ENDING_REQUESTS = ("cancel", "kill", "discard")
_ENDS = "cancel_requested IN ('cancel', 'kill', 'discard')"
_ENDED_STATUS = (
    "WHEN cancel_requested IN ('cancel', 'kill') THEN 'cancelled' WHEN cancel_requested = 'discard' THEN 'failed'"
)


def _requeue_status(normal: str) -> str:
    return f"status = CASE {_ENDED_STATUS} WHEN cancel_requested = 'pause' THEN 'paused' ELSE '{normal}' END"


def lease_sets(now: str) -> dict[str, str]:
    """The SET list of every fenced write, with ``now`` the SQL for the current time (see ``NOW``)."""
    ended_at = f"finished_at = CASE WHEN {_ENDS} THEN {now} ELSE finished_at END"
    return {
        "retry": f"{_requeue_status('pending')}, run_at = {now} + :delay, errors = :errors, worker_id = NULL, "
        f"{ended_at}, updated_at = {now}, cancel_requested = NULL",
        "fail": f"status = 'failed', errors = :errors, finished_at = {now}, updated_at = {now}, cancel_requested = NULL",
        "cancel": "status = CASE WHEN cancel_requested = 'discard' THEN 'failed' ELSE 'cancelled' END, "
        f"errors = :errors, finished_at = {now}, updated_at = {now}, cancel_requested = NULL",
        # release and snooze give the attempt back: the job did not fail, it was interrupted or deferred.
        "release": f"{_requeue_status('pending')}, attempt = attempt - 1, worker_id = NULL, run_at = {now} + :delay, "
        f"{ended_at}, updated_at = {now}, cancel_requested = NULL",
        "snooze": f"{_requeue_status('pending')}, attempt = attempt - 1, worker_id = NULL, run_at = {now} + :delay, "
        f"{ended_at}, updated_at = {now}, cancel_requested = NULL",
        "pause": f"{_requeue_status('paused')}, attempt = attempt - 1, worker_id = NULL, {ended_at}, "
        f"updated_at = {now}, cancel_requested = NULL",
        "progress": f"progress = :progress, updated_at = {now}",
        "checkpoint": f"checkpoint = :checkpoint, updated_at = {now}",
        # A rescued job: its worker is gone; the attempt stays spent and the crash is counted.
        "rescue": f"{_requeue_status('pending')}, run_at = {now}, errors = :errors, worker_id = NULL, "
        f"crashes = crashes + 1, {ended_at}, updated_at = {now}, cancel_requested = NULL",
        "rescue_fail": "status = CASE WHEN cancel_requested IN ('cancel', 'kill') THEN 'cancelled' ELSE 'failed' END, "
        f"errors = :errors, finished_at = {now}, crashes = crashes + 1, updated_at = {now}, cancel_requested = NULL",
        # A job that outlived a shutdown's grace and its token: a crash, but the attempt is given back.
        "release_crash": f"{_requeue_status('pending')}, attempt = attempt - 1, worker_id = NULL, run_at = {now}, "
        f"errors = :errors, crashes = crashes + 1, {ended_at}, updated_at = {now}, cancel_requested = NULL",
    }


def _lease_statements(now: str) -> dict[str, sa.TextClause]:
    return {
        kind: sa.text(
            f"UPDATE jobkit_jobs SET {sets} WHERE id = :id AND worker_id = :worker AND lease = :lease "
            "AND status = 'running' RETURNING id, status"
        )
        for kind, sets in lease_sets(now).items()
    }


#: Kinds whose write can only end ``failed`` through a pending 'discard' request.
_FAILS_ONLY_BY_DISCARD = frozenset({"retry", "cancel", "release", "snooze", "pause", "rescue", "release_crash"})
LEASE_KINDS = frozenset(lease_sets(":now")) | {"complete"}
_KEEPS_LEASE = frozenset({"progress", "checkpoint"})


@dataclass(slots=True)
class Transition:
    """One fenced write on a running job: ``kind`` is a key of the lease statements or ``complete``."""

    kind: str
    job_id: int
    worker: str
    lease: int
    values: dict[str, Any] = field(default_factory=dict)


class Store:
    """All SQL jobkit runs, for SQLite and PostgreSQL.

    Example::

        store = Store("sqlite:///jobs.sqlite3")
        store.migrate()
    """

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        db_clock: bool = False,
        process_clock: Callable[[], float] = time.time,
    ) -> None:
        """Open engines on ``url`` and migrate unless ``auto_migrate`` is off.

        ``db_clock`` (PostgreSQL): every time that decides eligibility or records a transition
        (run_at of jobs due now, retried, snoozed, released and rescued; the claim's "due"; started,
        finished and updated times) is the server's clock rather than the ``now`` callers pass.
        :class:`~jobkit.JobQueue` turns it on when it runs on the real clock; a fake clock keeps
        its own time everywhere. SQLite has no server: its clock is each process's own.

        ``process_clock`` (SQLite): this process's wall clock, which stamps its heartbeats (the same
        value ``julianday('now')`` would give); injectable so a test can run a skewed process.
        """
        self.url = url
        self.engine = create_engine(url)
        #: The URL as it may be printed: the password hidden.
        self.safe_url = self.engine.url.render_as_string(hide_password=True)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self.db_clock = db_clock and self.is_postgres
        self.process_clock = process_clock
        # Heartbeats get a small pool of their own: a busy completer, a big enqueue or a pool
        # exhausted by slow statements must never hold up the lease of the whole process.
        self.heartbeat_engine: sa.Engine = create_engine(url, autocommit=self.is_postgres, small=True)
        # PostgreSQL runs single statements in autocommit: one round trip instead of BEGIN,
        # statement, COMMIT. Each such statement is atomic on its own. SQLite keeps BEGIN
        # IMMEDIATE for every write, which costs no round trip there.
        self._single: sa.Engine = create_engine(url, autocommit=True) if self.is_postgres else self.engine
        self._hot: sa.Engine | None = create_hot_path_engine(url) if self.is_postgres else None
        self.sql: ModuleType = postgres if self.is_postgres else sqlite
        # The hot path's statements as the driver's own SQL text, rendered once by SQLAlchemy.
        self._driver_sql: dict[sa.TextClause, str] = {}
        self.db_now: str = self.sql.DB_NOW
        #: SQL for "now" in statements that bind ``:now`` (see :meth:`bind_now`).
        self.now_sql: str = self.sql.NOW
        self._lease_sql = _lease_statements(self.now_sql)
        #: What this process saw of other workers' heartbeats (SQLite's rescue rule; see liveness).
        self.heartbeats = HeartbeatObserver()
        self._migrated = False
        self._migrate_lock = threading.Lock()
        # SQLite has one writer at a time. Writers of this process take turns on this lock, so they
        # queue in Python instead of in SQLite's busy handler, which sleeps 1 ms and more between
        # tries; other processes still meet the busy timeout. Re-entrant for nested helpers.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if self.is_postgres else WriterTurns()
        )
        self.channel = "jobkit"
        if auto_migrate:
            self.migrate()
        if self.is_postgres:
            # NOTIFY channels are database-wide; a schema of its own gets a channel of its own.
            schema = self.scalar("SELECT current_schema()") or "public"
            self.channel = "jobkit" if schema == "public" else f"jobkit_{schema}"[:63]
        self.events_channel = f"{self.channel}_events"
        if len(self.events_channel) > 63:
            # PostgreSQL truncates identifiers at 63 bytes; a truncated name could equal the enqueue channel.
            self.events_channel = "jobkit_events_" + hashlib.sha1(self.channel.encode()).hexdigest()[:16]

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        self.heartbeat_engine.dispose()
        if self._single is not self.engine:
            self._single.dispose()
        if self._hot is not None:
            self._hot.dispose()

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite)."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def write_one(self) -> Iterator[sa.Connection]:
        """A connection for one atomic write statement: autocommit on PostgreSQL, BEGIN IMMEDIATE on SQLite."""
        if not self.is_postgres:
            with self._write_lock, self.engine.begin() as conn:
                yield conn
            return
        with self._single.connect() as conn:
            yield conn

    def _driver_text(self, statement: sa.TextClause) -> str:
        """A hot-path statement in the driver's own parameter style, rendered by SQLAlchemy once."""
        sql = self._driver_sql.get(statement)
        if sql is None:
            sql = str(statement.compile(dialect=self.engine.dialect)) if self.is_postgres else statement.text
            self._driver_sql[statement] = sql
        return sql

    def _hot_rows(
        self, statement: sa.TextClause, params_list: Iterable[dict[str, Any]], engine: sa.Engine | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement (once per parameter set) in one transaction on a pooled driver connection.

        ``engine`` defaults to the hot-path pool (PostgreSQL) or the one engine (SQLite).

        The enqueue, claim and completion statements run thousands of times a second. Executing
        them through SQLAlchemy's Connection costs more Python time than SQLite takes to run
        them, so they go straight to the pooled DBAPI connection: SQLAlchemy still owns the
        pool, the dialect set-up (WAL, BEGIN IMMEDIATE, session options) and the SQL rendering.
        """
        sql = self._driver_text(statement)
        engine = engine or self._hot or self.engine
        rows: list[tuple[Any, ...]] = []
        with self._write_lock, driver_connection(engine, immediate=not self.is_postgres) as cursor:
            for params in params_list:
                cursor.execute(sql, params)
                rows.extend(cursor.fetchall())
        return rows

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """Reads: deferred transaction on SQLite (readers never queue behind writers), autocommit on PostgreSQL.

        Under PostgreSQL's READ COMMITTED every statement sees its own snapshot either way, so
        autocommit loses no consistency and saves the BEGIN and COMMIT round trips.
        """
        if self.is_postgres:
            with self._single.connect() as conn:
                yield conn
            return
        with self.engine.connect().execution_options(jobkit_read=True) as conn, conn.begin():
            yield conn

    def _retry(self, fn: Callable[[], T]) -> T:
        return call_with_retry(fn)

    def _retry_short(self, fn: Callable[[], T]) -> T:
        # For calls made by a loop that has its own schedule: give up fast, the loop tries again.
        return call_with_retry(fn, max_seconds=1.0)

    def bind_now(self, now: float) -> float | None:
        """The value to bind as ``:now`` in statements written with :attr:`now_sql`.

        None under ``db_clock``: the statement then takes the server's clock (PostgreSQL's NOW).
        """
        return None if self.db_clock else now

    def checkpoint_wal(self) -> bool:
        """Fold SQLite's write-ahead log into the database and truncate it to zero bytes.

        A reader that holds a snapshot open stops checkpoints from getting past it, so the WAL
        grows while it lasts; once it ends, this shrinks the file again. Returns whether the
        whole log was folded in (False while some reader still holds an old snapshot). A no-op
        on PostgreSQL (True).
        """
        if self.is_postgres:
            return True

        def run() -> bool:
            # Our own writers take turns first, so the checkpoint does not wait in SQLite's busy handler.
            with self._write_lock:
                proxy = self.engine.raw_connection()
                try:
                    # Autocommit (the connection's isolation_level is None): a checkpoint cannot run in a transaction.
                    cursor = proxy.cursor()
                    # TRUNCATE waits in the busy handler for readers of old snapshots: with a long
                    # reader elsewhere it would sit out the whole busy timeout. Give up fast instead;
                    # the next idle pass tries again.
                    cursor.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_TIMEOUT_MS}")
                    try:
                        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        row = cursor.fetchone()
                    finally:
                        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                        cursor.close()
                finally:
                    proxy.close()
            return row is not None and not row[0]  # (busy, log frames, checkpointed frames)

        return self._retry_short(run)

    def scalar(self, sql: str, **params: Any) -> Any:
        """Run one read statement and return its first column of its first row."""

        def run() -> Any:
            with self.read() as conn:
                return conn.execute(sa.text(sql), params).scalar()

        return self._retry(run)

    def migrate(self) -> None:
        """Bring the schema to the newest shipped migration (cheap when it already is)."""
        with self._migrate_lock:
            if self._migrated:
                return
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            head = ScriptDirectory.from_config(config).get_current_head()
            if self._current_revision() != head:
                with self.engine.begin() as conn:
                    if self.is_postgres:
                        # Many workers may start at once: one migrates, the others wait, then see head.
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7305092183)")
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            self._migrated = True

    def _current_revision(self) -> str | None:
        try:
            with self.read() as conn:
                return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        except sa.exc.DBAPIError:
            return None

    def now(self) -> float:
        """The database's clock, in epoch seconds."""
        return float(self.scalar(f"SELECT {self.db_now}"))

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(self, rows: Sequence[NewJob], connection: sa.Connection | None = None, now: float = 0.0) -> list[int]:
        """Insert jobs (one multi-row insert per chunk) and wake workers; returns ids in order.

        With ``connection`` the rows join the caller's transaction and exist only if it commits.
        The wake-up (NOTIFY on PostgreSQL) is sent in the same transaction, so it fires at commit.
        """
        if not rows:
            return []
        # The payload carries the earliest run time when it lies ahead, so listeners can wake then.
        earliest = min(row.run_at for row in rows)
        payload = repr(earliest) if earliest > now else ""

        server = {"server_clock": True} if self.db_clock else {}
        if len(rows) == 1:
            # One statement that inserts and notifies: in autocommit it is one round trip.
            statement, params = self.sql.insert_one(rows[0], now, self.channel, payload, **server)

            def one(conn: sa.Connection) -> list[int]:
                return [int(conn.execute(statement, params).scalar_one())]

            if connection is not None:
                return one(connection)

            def one_alone() -> list[int]:
                # Enqueues stay synchronous on PostgreSQL: the single-statement autocommit pool.
                return [int(self._hot_rows(statement, [params], self._single)[0][0])]

            return self._retry(one_alone)

        def many(conn: sa.Connection) -> list[int]:
            ids: list[int] = []
            for statement, params in self.sql.insert_many(rows, now, **server):
                # Ids are allocated ascending in row order within a statement, so sorting restores it.
                ids.extend(sorted(int(r[0]) for r in conn.execute(statement, params)))
            self.sql.notify(conn, self.channel, payload)
            return ids

        if connection is not None:
            return many(connection)

        def many_in_tx() -> list[int]:
            with self.write() as conn:
                return many(conn)

        return self._retry(many_in_tx)

    # -- the worker's hot path ----------------------------------------------------------------

    def claim(
        self, worker: str, limit: int, names: Sequence[str], queues: Sequence[str] | None, now: float
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs of the given types in one statement, in priority order."""
        if limit <= 0 or not names:
            return []
        if self.is_postgres:
            params = postgres.claim_params(list(names), list(queues) if queues else None)
        else:
            params = sqlite.claim_params(json.dumps(list(names)), json.dumps(list(queues)) if queues else None)
        params.update({"worker": worker, "limit": limit, "now": self.bind_now(now)})
        statement = self.sql.CLAIM_SOME_QUEUES if queues else self.sql.CLAIM_ALL_QUEUES

        def run() -> list[ClaimedJob]:
            rows = self._hot_rows(statement, [params])
            return sorted((ClaimedJob.from_row(r, worker) for r in rows), key=lambda j: (j.priority, j.run_at, j.id))

        return self._retry(run)

    def apply(self, transitions: Sequence[Transition], now: float) -> list[bool]:
        """Write many fenced transitions; returns, per transition, whether it took (see :meth:`apply_detailed`)."""
        return [status is not None for status in self.apply_detailed(transitions, now)]

    def apply_detailed(self, transitions: Sequence[Transition], now: float) -> list[str | None]:
        """Write many fenced transitions; returns, per transition, the job's status after it (None: refused).

        The status tells what a write became when the operator had asked for something meanwhile:
        a retry, snooze, release or pause of a job whose cancel was requested ends ``cancelled``
        (``failed``, with a Discard entry, for a discard request), and a requeue of a job whose
        pause was requested ends ``paused``. Progress and checkpoint writes report ``running``.

        Progress and checkpoint writes are applied first, then completions, then the other
        kinds in the order given. Waiting handles in other processes are notified of every
        job that changed, in the same transaction (PostgreSQL). A batch made only of
        completions of distinct jobs by one worker is one statement (autocommit on
        PostgreSQL); anything else is one transaction.
        """
        if not transitions:
            return []
        workers = {t.worker for t in transitions}
        if (
            len(workers) == 1
            and all(t.kind == "complete" for t in transitions)
            and len({t.job_id for t in transitions}) == len(transitions)
        ):
            return self._complete_only(transitions, workers.pop(), now)

        def run() -> list[str | None]:
            took: list[str | None] = [None] * len(transitions)
            with self.write() as conn:
                # Progress and checkpoints never end a lease, so they go first: a job's last progress,
                # batched with its completion, must land before the completion ends the lease.
                keeps = [i for i, t in enumerate(transitions) if t.kind in _KEEPS_LEASE]
                ends = [i for i, t in enumerate(transitions) if t.kind not in _KEEPS_LEASE and t.kind != "complete"]
                for i in keeps:
                    took[i] = self._fenced(conn, transitions[i], now)
                # Completions go in one statement per worker. COMPLETE_MANY reports job ids, so one
                # call never carries the same job twice (say a stale and a current attempt of it):
                # a repeat goes to a later call, where only a lease that still matches can take.
                calls: dict[tuple[str, int], list[tuple[int, Transition]]] = {}
                repeats: dict[tuple[str, int], int] = {}
                for i, t in enumerate(transitions):
                    if t.kind == "complete":
                        nth = repeats.get((t.worker, t.job_id), 0)
                        repeats[(t.worker, t.job_id)] = nth + 1
                        calls.setdefault((t.worker, nth), []).append((i, t))
                for (worker, _), items in calls.items():
                    rows = [(t.job_id, t.lease, t.values.get("result") or "null") for _, t in items]
                    done = {
                        int(r[0])
                        for params in self.sql.complete_many_params(worker, self.bind_now(now), rows)
                        for r in conn.execute(self.sql.COMPLETE_MANY, params)
                    }
                    for i, t in items:
                        took[i] = "completed" if t.job_id in done else None
                for i in ends:
                    took[i] = self._fenced(conn, transitions[i], now)
                if self.is_postgres:
                    changed = sorted({t.job_id for t, ok in zip(transitions, took, strict=True) if ok is not None})
                    for payload in id_payloads(changed):
                        self.sql.notify(conn, self.events_channel, payload)
            return took

        return self._retry(run)

    def _complete_only(self, transitions: Sequence[Transition], worker: str, now: float) -> list[str | None]:
        done = self.complete(worker, [(t.job_id, t.lease, t.values.get("result") or "null") for t in transitions], now)
        return ["completed" if t.job_id in done else None for t in transitions]

    def complete(self, worker: str, rows: Sequence[tuple[int, int, str]], now: float) -> set[int]:
        """Complete distinct jobs of one worker, given as (id, lease, result JSON), in one statement.

        Returns the ids whose lease still held; waiting handles in other processes are notified
        of those in the same statement (PostgreSQL).
        """

        def run() -> set[int]:
            params = self.sql.complete_many_params(worker, self.bind_now(now), list(rows), self.events_channel)
            return {int(r[0]) for r in self._hot_rows(self.sql.COMPLETE_MANY, params)}

        return self._retry(run)

    def _fenced(self, conn: sa.Connection, t: Transition, now: float) -> str | None:
        params = {"id": t.job_id, "worker": t.worker, "lease": t.lease, **t.values, "now": self.bind_now(now)}
        if "run_at" in params and "delay" not in params:
            # A caller may give an absolute run time; the statements take a delay from the row's now.
            params["delay"] = float(params.pop("run_at")) - now
        row = conn.execute(self._lease_sql[t.kind], params).first()
        if row is None:
            return None
        status = str(row[1])
        if status == "failed" and t.kind in _FAILS_ONLY_BY_DISCARD:
            append_error(conn, t.job_id, discard_entry(now), self.now_sql, self.bind_now(now))
        return status

    def transition(self, t: Transition, now: float) -> bool:
        """Write one fenced transition; returns whether its lease still matched."""
        return self.apply_detailed([t], now)[0] is not None

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobRecord | None:
        """One job's full row, or None."""

        def run() -> JobRecord | None:
            with self.read() as conn:
                row = conn.execute(sa.text(f"SELECT {JOB_COLUMNS} FROM jobkit_jobs WHERE id = :id"), {"id": job_id})
                found = row.first()
            return None if found is None else JobRecord(*found)

        return self._retry(run)

    def status_of(self, job_id: int) -> str | None:
        """Just the status column (cheap polling for result waits)."""
        value = self.scalar("SELECT status FROM jobkit_jobs WHERE id = :id", id=job_id)
        return None if value is None else str(value)

    def list_jobs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        queue: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs filtered by status, type and queue, newest first."""
        where, params = _filters(status=status, name=name, queue=queue)
        params["limit"] = limit
        sql = f"SELECT {JOB_COLUMNS} FROM jobkit_jobs {where} ORDER BY id DESC LIMIT :limit"

        def run() -> list[JobRecord]:
            with self.read() as conn:
                return [JobRecord(*r) for r in conn.execute(sa.text(sql), params)]

        return self._retry(run)

    def next_run_at(self, names: Sequence[str], queues: Sequence[str] | None, now: float) -> float | None:
        """The earliest future run_at among pending jobs this worker could claim (to sleep until then)."""
        if not names:
            return None
        where = f"status = 'pending' AND run_at > {self.now_sql} AND name IN :names"
        params: dict[str, Any] = {"now": self.bind_now(now), "names": list(names)}
        stmt = sa.text(
            f"SELECT MIN(run_at) FROM jobkit_jobs WHERE {where}" + (" AND queue IN :queues" if queues else "")
        )
        stmt = stmt.bindparams(sa.bindparam("names", expanding=True))
        if queues:
            params["queues"] = list(queues)
            stmt = stmt.bindparams(sa.bindparam("queues", expanding=True))

        def run() -> float | None:
            with self.read() as conn:
                value = conn.execute(stmt, params).scalar()
            return None if value is None else float(value)

        return self._retry_short(run)


class WriterTurns:
    """A re-entrant lock for this process's SQLite writers that gives up like SQLite's busy timeout.

    A writer that cannot get its turn within the busy timeout fails with the same "database is
    locked" error SQLite itself would raise, so callers retry it (or fence) exactly as before.
    """

    def __init__(self, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        self._lock = threading.RLock()
        self._timeout = timeout

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=self._timeout):
            raise sqlite3.OperationalError("database is locked (another writer of this process held it)")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


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


def _filters(**fields: str | None) -> tuple[str, dict[str, Any]]:
    clauses = [f"{key} = :{key}" for key, value in fields.items() if value is not None]
    params: dict[str, Any] = {key: value for key, value in fields.items() if value is not None}
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

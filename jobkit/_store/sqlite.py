"""SQLite's dialect: WAL, BEGIN IMMEDIATE, writers taking turns, JSON-array batches, no server clock.

SQLite has one writer at a time and no server: every process is its own clock (``now`` is the
caller's time), heartbeats are judged by watching them change (see liveness.py), and other
processes notice changes through ``PRAGMA data_version`` and doorbells (listen_sqlite.py)
instead of NOTIFY.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from jobkit._store.dialect import Dialect, Engines
from jobkit._store.engine import driver_connection
from jobkit._store.keys_sql import keyed_candidates
from jobkit._store.listen_sqlite import SqliteListener
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
from jobkit._store.schema import IS_PENDING, IS_SCHEDULED, IS_STAGED
from jobkit._store.statements import COMPLETED, PENDING, RUNNING, Statement

SQLITE_BUSY_TIMEOUT_MS = 10_000

#: After a checkpoint SQLite truncates the write-ahead log to at most this size, so a WAL that grew
#: while a long reader held a snapshot does not keep its peak size for ever.
SQLITE_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

#: How long an idle WAL checkpoint waits for other connections before giving up until next time.
CHECKPOINT_BUSY_TIMEOUT_MS = 200

#: Rows per bulk-insert statement (one JSON parameter each, so SQLite's bound-variable limit never caps it).
INSERT_CHUNK = 5000

_FENCE = ("id", "lease")


def _claim_sql(filter_queues: bool) -> sa.TextClause:
    queue_filter = "AND queue IN (SELECT value FROM json_each(:queues))" if filter_queues else ""
    # SQLite has no SKIP LOCKED: the transaction was opened with BEGIN IMMEDIATE, which holds
    # the write lock from the start, so this select-and-update is atomic across processes.
    return sa.text(
        f"""
        UPDATE jobkit_jobs
           SET status = {RUNNING}, attempt = attempt + 1, lease = lease + 1, worker_id = :worker,
               started_at = :now, updated_at = :now, cancel_requested = NULL
         WHERE id IN (
               SELECT id FROM jobkit_jobs
                WHERE {IS_STAGED} AND run_at <= :now AND concurrency_key IS NULL
                  AND name IN (SELECT value FROM json_each(:names))
                  {queue_filter}
                  AND queue NOT IN (SELECT queue FROM jobkit_queue_pauses)
                ORDER BY priority, run_at, id
                LIMIT :limit)
        RETURNING {", ".join(CLAIM_COLUMNS)}
        """
    )


def _keyed_claim_sql(filter_queues: bool) -> sa.TextClause:
    queue_filter = "AND c.queue IN (SELECT value FROM json_each(:queues))" if filter_queues else ""
    filters = f"""AND c.name IN (SELECT value FROM json_each(:keyed))
                       {queue_filter}
                       AND c.queue NOT IN (SELECT queue FROM jobkit_queue_pauses)"""
    # Jobs with a concurrency key (keys_sql.py). BEGIN IMMEDIATE makes the count and the claim
    # atomic across processes.
    return sa.text(
        f"""
        UPDATE jobkit_jobs
           SET status = {RUNNING}, attempt = attempt + 1, lease = lease + 1, worker_id = :worker,
               started_at = :now, updated_at = :now, cancel_requested = NULL, staged = TRUE
         WHERE {IS_PENDING} AND id IN ({keyed_candidates(":now", filters)})
        RETURNING {", ".join(CLAIM_COLUMNS)}
        """
    )


_INSERTED = ", ".join(INSERT_COLUMNS)
_PACKED = ", ".join(PACKED_COLUMNS)

# One statement completes a whole batch, the lease still checked row by row. The batch is one
# JSON array of Completion rows unpacked by json_each (UPDATE … FROM needs SQLite 3.33+,
# RETURNING 3.35+, which the claim already needs).
_COMPLETE_MANY = sa.text(
    f"""
    UPDATE jobkit_jobs
       SET status = {COMPLETED}, {", ".join(f"{c} = v.{c}" for c in COMPLETION_COLUMNS if c not in _FENCE)},
           finished_at = :now, updated_at = :now, cancel_requested = NULL
      FROM (SELECT {", ".join(f"value ->> {i} AS {c}" for i, c in enumerate(COMPLETION_COLUMNS))}
              FROM json_each(:rows)) AS v
     WHERE {" AND ".join(f"jobkit_jobs.{c} = v.{c}" for c in _FENCE)}
       AND jobkit_jobs.worker_id = :worker AND jobkit_jobs.status = {RUNNING}
    RETURNING jobkit_jobs.id
    """
)


class WriterTurns:
    """A re-entrant lock for this process's SQLite writers that gives up like SQLite's busy timeout.

    Writers of one process take turns here, so they queue in Python instead of in SQLite's busy
    handler, which sleeps 1 ms and more between tries; other processes still meet the busy
    timeout. A writer that cannot get its turn within the timeout fails with the same "database
    is locked" error SQLite itself would raise, so callers retry it (or fence) exactly as before.
    """

    def __init__(self, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        self._lock = threading.RLock()
        self._timeout = timeout

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=self._timeout):
            raise sqlite3.OperationalError("database is locked (another writer of this process held it)")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class SQLiteDialect(Dialect):
    """Every statement jobkit runs on SQLite that differs from PostgreSQL's."""

    name = "sqlite"
    #: julianday has millisecond resolution.
    db_now = "((julianday('now') - 2440587.5) * 86400.0)"
    #: julianday('now') would be this process's clock as well, so the caller's clock (a test's
    #: fake clock) is used as it is.
    now = ":now"
    #: Each process stamps its heartbeat with its own clock; rescuers watch it change.
    beat = ":beat"
    server_clock = False
    notifies_enqueues = False
    same_worker = "worker_id IS :worker"
    same_last_fire = "last_fire_at IS :expected"
    #: No row locks: BEGIN IMMEDIATE already serialises every writer.
    for_update = ""
    insert_pause = sa.text("INSERT OR IGNORE INTO jobkit_queue_pauses (queue, paused_at) VALUES (:q, :now)")

    claim_all = _claim_sql(False)
    claim_some = _claim_sql(True)
    keyed_all = _keyed_claim_sql(False)
    keyed_some = _keyed_claim_sql(True)
    #: BEGIN IMMEDIATE already makes keyed claims take turns.
    keyed_lock = None
    stage_statement = sa.text(
        f"""
        UPDATE jobkit_jobs SET staged = TRUE
         WHERE id IN (SELECT id FROM jobkit_jobs WHERE {IS_SCHEDULED} AND run_at <= :now ORDER BY run_at LIMIT :stage_limit)
        """
    )
    complete_statement = _COMPLETE_MANY
    # A row due as it is written goes straight to the claim index.
    insert_one_statement = sa.text(
        f"INSERT INTO jobkit_jobs ({_INSERTED}, status, staged, created_at) "
        f"VALUES ({', '.join(':' + c for c in INSERT_COLUMNS)}, {PENDING}, :run_at <= :now, :now) RETURNING id"
    )
    # A whole chunk as one JSON array parameter, unpacked by json_each: no per-row bind parameters.
    insert_many_statement = sa.text(
        f"""
        INSERT INTO jobkit_jobs ({_PACKED}, status, staged, created_at)
        SELECT {", ".join(f"value ->> {i}" for i in range(len(PACKED_COLUMNS)))}, {PENDING},
               value ->> {PACKED_COLUMNS.index("run_at")} <= :now, :now
          FROM json_each(:rows)
         ORDER BY key
        RETURNING id
        """
    )

    def engines(self, url: str) -> Engines:
        main = _engine(url, pool_size=8, max_overflow=32)
        # Heartbeats get a small pool of their own: a big enqueue or a busy completer must never
        # hold up the lease of the whole process.
        return Engines(main=main, single=main, hot=main, heartbeat=_engine(url, pool_size=1, max_overflow=1))

    def writer_turns(self) -> AbstractContextManager[Any]:
        return WriterTurns()

    @contextlib.contextmanager
    def read(self, engines: Engines) -> Iterator[sa.Connection]:
        # A deferred transaction: readers never queue behind writers.
        with engines.main.connect().execution_options(jobkit_read=True) as conn, conn.begin():
            yield conn

    def driver(self, engine: sa.Engine) -> AbstractContextManager[Any]:
        return driver_connection(engine, immediate=True)

    def driver_text(self, statement: sa.TextClause, engine: sa.Engine) -> str:
        # sqlite3 takes :name parameters with a dict as they are.
        return statement.text

    def claim(self, names: Sequence[str], queues: Sequence[str] | None) -> Statement:
        # The name and queue filters are JSON arrays read by json_each.
        if queues:
            return self.claim_some, {"names": json.dumps(list(names)), "queues": json.dumps(list(queues))}
        return self.claim_all, {"names": json.dumps(list(names))}

    def claim_keyed(self, keyed: Sequence[str], queues: Sequence[str] | None) -> Statement:
        if queues:
            return self.keyed_some, {"keyed": json.dumps(list(keyed)), "queues": json.dumps(list(queues))}
        return self.keyed_all, {"keyed": json.dumps(list(keyed))}

    def insert_one(self, row: NewJob, *, now: float, channel: str, payload: str, server_clock: bool) -> Statement:
        # Other processes notice the new row through PRAGMA data_version.
        return self.insert_one_statement, {**insert_params(row), "now": now}

    def insert_many(self, rows: Sequence[NewJob], *, now: float, server_clock: bool) -> Iterator[Statement]:
        for start in range(0, len(rows), INSERT_CHUNK):
            # ensure_ascii=False: text goes in as UTF-8 and ->> copies it out, so no \u escape is ever
            # decoded by SQLite (which would turn a lone surrogate into invalid UTF-8 and a \u0000 into a
            # truncated name). Names are validated before this (no NUL, no surrogates), and the args are
            # JSON text already, so SQLite stores exactly what PostgreSQL stores.
            packed = json.dumps([packed_values(r) for r in rows[start : start + INSERT_CHUNK]], ensure_ascii=False)
            yield self.insert_many_statement, {"rows": packed, "now": now}

    def complete_many(
        self, worker: str, now: float | None, rows: Sequence[Completion], channel: str = ""
    ) -> Iterator[Statement]:
        # The whole batch as one JSON array. SQLite has no NOTIFY, so ``channel`` is ignored: waiting handles poll.
        yield self.complete_statement, {"rows": json.dumps(list(rows)), "worker": worker, "now": now}

    def notify(self, conn: sa.Connection, channel: str, payload: str) -> None:
        """No NOTIFY: other processes see the commit through data_version, or the doorbell rung after it."""

    def notify_jobs(self, conn: sa.Connection, channel: str, job_ids: Iterable[int]) -> None:
        """No NOTIFY: handles in other processes poll; in-process changes wake them through events."""

    def channel(self, scalar: Callable[[str], Any]) -> str:
        return "jobkit"

    def listener(self, url: sa.URL, *, channel: str, events_channel: str) -> Listener:
        # No NOTIFY: the data_version poll and the doorbells of the database file.
        return SqliteListener(url.database or "")

    def lock_migrations(self, conn: sa.Connection) -> None:
        """BEGIN IMMEDIATE already makes concurrent migrations take turns."""

    def beat_params(self, process_clock: Callable[[], float]) -> dict[str, Any]:
        return {"beat": process_clock()}

    def checkpoint(self, engine: sa.Engine, turns: AbstractContextManager[Any]) -> bool:
        # Our own writers take turns first, so the checkpoint does not wait in SQLite's busy handler.
        with turns:
            proxy = engine.raw_connection()
            try:
                # Autocommit (the connection's isolation_level is None): a checkpoint cannot run in a transaction.
                cursor = proxy.cursor()
                # TRUNCATE waits in the busy handler for readers of old snapshots: with a long reader
                # elsewhere it would sit out the whole busy timeout. Give up fast instead; the next idle
                # pass tries again.
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


def _engine(url: str, **pool: int) -> sa.Engine:
    """An engine in WAL mode whose writes begin IMMEDIATE; parameters are left out of error messages."""
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        hide_parameters=True,
        **pool,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # SQLite has no SKIP LOCKED: BEGIN IMMEDIATE takes the write lock up front, so a
        # select-then-update inside the transaction is atomic across processes and never
        # fails half-way with "database is locked" on lock upgrade. Readers start deferred.
        if conn.get_execution_options().get("jobkit_read"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine

"""The store's own health: transient vs permanent errors, a full disk, the SQLite WAL, heartbeats.

* Only a lock held elsewhere, a dropped connection or a lost race is retried; a data error, a
  missing table or a full disk is raised at once (a full disk within a second, saying so).
* After a long reader ends, the idle worker's housekeeping folds the WAL back and truncates it.
* A heartbeat runs on its own connection: this process's other writers cannot hold it up.
* Migration 0003 adds each worker's stuck-thread count, which the heartbeat writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from jobkit import JobQueue
from jobkit._store import NewJob, Store, is_transient, open_store
from jobkit._store.sqlite import SQLITE_JOURNAL_SIZE_LIMIT
from jobkit._store.store import MIGRATIONS

NAME = "tests.health_probe"


def caught(fn: Any) -> BaseException:
    """The exception ``fn()`` raises."""
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("no error raised")


def statement_error(store: Store, sql: str) -> BaseException:
    """The error one statement raises on this store's database."""

    def run() -> None:
        with store.engine.begin() as conn:
            conn.execute(sa.text(sql))

    return caught(run)


# -- transient or permanent ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM no_such_table",
        "INSERT INTO jobkit_jobs (name) VALUES ('x')",  # NOT NULL
    ],
)
def test_data_and_schema_errors_are_permanent(store: Store, sql: str) -> None:
    """A missing table or a NOT NULL violation is never taken for an outage."""
    assert not is_transient(statement_error(store, sql))


def test_postgres_data_errors_are_permanent(store: Store) -> None:
    """PostgreSQL: a number out of range, invalid text and bad JSON are permanent."""
    if not store.is_postgres:
        pytest.skip("PostgreSQL's error classes")
    for sql in ("SELECT CAST(2147483648 AS integer)", "SELECT CAST('x' AS integer)", "SELECT CAST('{' AS json)"):
        assert not is_transient(statement_error(store, sql)), sql


def test_postgres_races_and_connection_failures_are_transient(store: Store) -> None:
    """PostgreSQL: a refused connection, a lock timeout and a serialization failure are retried."""
    if not store.is_postgres:
        pytest.skip("PostgreSQL's error classes")
    refused = caught(lambda: psycopg.connect("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2))
    assert is_transient(refused)
    with store.engine.connect() as holder:
        holder.execute(sa.text("LOCK TABLE jobkit_workers IN ACCESS EXCLUSIVE MODE"))

        def wait_for_lock() -> None:
            with store.engine.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
                conn.execute(sa.text("SELECT * FROM jobkit_workers"))

        timed_out = caught(wait_for_lock)
        holder.rollback()
    assert is_transient(timed_out)
    assert is_transient(psycopg.errors.SerializationFailure("could not serialize access"))
    assert is_transient(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert not is_transient(psycopg.errors.DiskFull("could not extend file"))


def test_sqlite_lock_is_transient_and_full_disk_is_not(store: Store, tmp_path: Path) -> None:
    """SQLite: "database is locked" from another connection is retried; SQLITE_FULL is not."""
    if store.is_postgres:
        pytest.skip("SQLite's error messages")
    path = store.url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        other = sqlite3.connect(path, timeout=0.05)
        assert is_transient(caught(lambda: other.execute("BEGIN IMMEDIATE")))
        other.close()
    finally:
        holder.rollback()
        holder.close()
    small = sqlite3.connect(tmp_path / "small.sqlite3")
    small.execute("CREATE TABLE t (v TEXT)")
    pages = small.execute("PRAGMA page_count").fetchone()[0]
    small.execute(f"PRAGMA max_page_count = {pages + 1}")
    full = caught(lambda: small.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,)))
    assert "full" in str(full) and not is_transient(full)
    small.close()


def test_a_full_disk_surfaces_within_a_second(store: Store) -> None:
    """An enqueue that fills the database fails at once with "database or disk is full", not after retries."""
    if store.is_postgres:
        pytest.skip("simulated with SQLite's max_page_count")
    store.enqueue([NewJob(NAME, "{}", "default", 0, 0.0, 0)], now=0.0)
    pages = int(store.scalar("PRAGMA page_count"))

    @sa.event.listens_for(store.engine, "connect")
    def _cap(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    store.engine.dispose()  # new connections get the cap
    started = time.monotonic()
    error = caught(lambda: store.enqueue([NewJob(NAME, "x" * 1_000_000, "default", 0, 0.0, 0)], now=0.0))
    assert time.monotonic() - started < 1.0
    assert "database or disk is full" in str(error)
    assert "xxxxxxxxxx" not in str(error)  # the payload is not dumped into the message


def test_a_dropped_table_surfaces_at_once(store: Store) -> None:
    """A table dropped under a running process is reported at once, not retried as an outage."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE jobkit_jobs"))
    started = time.monotonic()
    caught(lambda: store.get(1))
    assert time.monotonic() - started < 1.0


# -- SQLite housekeeping -------------------------------------------------------------------------------


def test_the_wal_shrinks_after_a_long_reader_ends(queue: JobQueue) -> None:
    """A reader holding a snapshot lets the WAL grow; once it ends, the idle worker's housekeeping truncates it."""
    store = queue.store
    if store.is_postgres:
        assert queue.worker.housekeep_once() is True  # nothing to do, nothing to fail
        return
    path = store.url.removeprefix("sqlite:///")
    assert store.scalar("PRAGMA journal_size_limit") == SQLITE_JOURNAL_SIZE_LIMIT
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM jobkit_jobs").fetchone()
    try:
        for _ in range(20):
            store.enqueue([NewJob(NAME, '"' + "x" * 2000 + '"', "default", 0, 0.0, 0) for _ in range(200)], now=0.0)
        grown = os.path.getsize(path + "-wal")
        assert grown > 4_000_000
        assert store.checkpoint_wal() is False  # the reader still holds its snapshot
    finally:
        reader.rollback()
        reader.close()
    assert queue.worker.housekeep_once() is True
    assert os.path.getsize(path + "-wal") == 0
    assert int(store.scalar("SELECT count(*) FROM jobkit_jobs")) == 4000


# -- heartbeats ------------------------------------------------------------------------------------------


def test_a_heartbeat_is_not_held_up_by_this_process_s_writers(store: Store) -> None:
    """While another thread of this process holds its writer turn (a big enqueue), the heartbeat still lands."""
    store.register_worker("worker-a", host="host", pid=os.getpid(), queues=None, concurrency=1)
    holding, release = threading.Event(), threading.Event()

    def busy_writer() -> None:
        with store._write_lock:
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=busy_writer)
    thread.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        assert store.heartbeat("worker-a") == 0
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        thread.join()


def test_the_heartbeat_records_stuck_threads(store: Store) -> None:
    """heartbeat_held(stuck=n) stores the count; list_workers shows it."""
    store.register_worker("worker-a", host="host", pid=os.getpid(), queues=None, concurrency=4)
    assert [w.stuck for w in store.list_workers(rescue_after=60.0)] == [0]
    assert store.heartbeat("worker-a", stuck=2) == 0
    [record] = store.list_workers(rescue_after=60.0)
    assert (record.id, record.stuck, record.alive) == ("worker-a", 2, True)


def test_migration_0003_adds_stuck_to_existing_workers(db_url: str) -> None:
    """A database at 0002 with a worker row upgrades to head; the row reads stuck = 0."""
    store = open_store(db_url, auto_migrate=False)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO jobkit_workers (id, host, pid, concurrency, started_at, heartbeat_at) "
                    "VALUES ('old', 'h', 1, 1, 0, 0)"
                )
            )
        store.migrate()
        assert [(w.id, w.stuck) for w in store.list_workers(rescue_after=60.0)] == [("old", 0)]
    finally:
        store.close()

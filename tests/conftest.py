"""Shared fixtures: one suite, parametrised over SQLite and PostgreSQL.

Each PostgreSQL test gets a schema of its own (never a shared, truncated table).
Locally an unreachable PostgreSQL skips those tests; under CI=true it fails them.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import jobkit
from jobkit import FakeClock, JobQueue
from jobkit._store import Store, open_store
from tests.observe import EventLog

# The Django suite needs Django 6, hence Python >= 3.12: `make test-django` runs it in environments of its
# own, and the main suite (Python 3.11) leaves it alone.
collect_ignore = ["django"] if sys.version_info < (3, 12) else []

PG_ADMIN = os.environ.get("JOBKIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, bool] = {}


def pg_available() -> bool:
    """Whether the test PostgreSQL server answers (checked once)."""
    if "ok" not in _pg_state:
        try:
            with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_state["ok"] = True
        except psycopg.Error:
            _pg_state["ok"] = False
    return _pg_state["ok"]


def require_pg() -> None:
    """Skip (locally) or fail (under CI=true) when PostgreSQL is unreachable."""
    if pg_available():
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN} and CI=true: refusing to skip")
    pytest.skip("PostgreSQL is unreachable")


def make_pg_url() -> tuple[str, str]:
    """Create a fresh schema; returns (SQLAlchemy URL with search_path set, schema name)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options=-csearch_path%3D{schema}", schema


def drop_pg_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on a fresh database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
        return
    require_pg()
    url, schema = make_pg_url()
    try:
        yield url
    finally:
        drop_pg_schema(schema)


FAST = {
    "poll_interval": 0.2,
    "heartbeat_interval": 0.5,
    "rescue_after": 3.0,
    "rescue_interval": 0.5,
    "cancel_check_interval": 0.1,
    "shutdown_grace": 5.0,
}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on a fresh database (no queue, no worker)."""
    s = open_store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock for scheduled-job tests."""
    return FakeClock()


@pytest.fixture
def queue(db_url: str) -> Iterator[JobQueue]:
    """A queue on a fresh database with a compressed timing profile, installed process-wide."""
    q = jobkit.configure(database_url=db_url, concurrency=5, **FAST)
    try:
        yield q
    finally:
        q.close()
        JobQueue.set_instance(None)


@pytest.fixture
def clocked_queue(db_url: str, clock: FakeClock) -> Iterator[JobQueue]:
    """Like ``queue`` but on a fake clock (use run_once, not worker threads)."""
    q = jobkit.configure(database_url=db_url, clock=clock, **FAST)
    try:
        yield q
    finally:
        q.close()
        JobQueue.set_instance(None)


@pytest.fixture
def events(queue: JobQueue) -> Iterator[EventLog]:
    """Every event the queue emits, to wait on."""
    log = EventLog(queue)
    yield log
    log.close()


@pytest.fixture
def control(tmp_path: Path) -> Path:
    """A directory for the jobs' file controls (holds, one-off failures, their ran.log)."""
    path = tmp_path / "control"
    path.mkdir()
    return path

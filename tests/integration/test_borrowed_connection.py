"""borrowed_connection: jobkit's writes inside a transaction that another library owns on its DB-API connection."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
import pytest

from jobkit._store import NewJob, Store, borrowed_connection


def raw_connection(url: str) -> Any:
    """A DB-API connection of the caller's own to the database at ``url``, with a transaction open."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        conn = sqlite3.connect(unquote(parts.path)[1:], isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN")
        return conn
    options = parse_qs(parts.query).get("options", [""])[0]
    return psycopg.connect(
        host=parts.hostname, port=parts.port, user=parts.username, dbname=parts.path[1:], options=options
    )  # psycopg opens a transaction at the first statement


@pytest.fixture
def owned(db_url: str, store: Store) -> Iterator[Any]:
    conn = raw_connection(db_url)
    try:
        yield conn
    finally:
        conn.close()


def enqueue(store: Store, url: str, conn: Any) -> int:
    now = time.time()
    with borrowed_connection(url, conn) as borrowed:
        [job_id] = store.enqueue([NewJob("borrowed", "{}", "default", 0, now, 3)], now=now, connection=borrowed)
    return job_id


def test_the_job_commits_with_the_owners_transaction(db_url: str, store: Store, owned: Any) -> None:
    """The row is invisible to other connections until the owner commits."""
    job_id = enqueue(store, db_url, owned)
    assert store.get(job_id) is None
    owned.commit()
    assert store.get(job_id) is not None


def test_the_job_rolls_back_with_the_owners_transaction(db_url: str, store: Store, owned: Any) -> None:
    """A rollback by the owner takes the row with it."""
    job_id = enqueue(store, db_url, owned)
    owned.rollback()
    assert store.get(job_id) is None


def test_closing_the_borrowed_connection_leaves_the_transaction_open(db_url: str, store: Store, owned: Any) -> None:
    """Two enqueues in a row, then the owner's own statement, all in one transaction."""
    first, second = enqueue(store, db_url, owned), enqueue(store, db_url, owned)
    cursor = owned.cursor()
    cursor.execute("SELECT count(*) FROM jobkit_jobs")
    assert cursor.fetchone()[0] == 2
    assert store.get(first) is None and store.get(second) is None

"""Engines, connection set-up per dialect, and the retry policy for transient database errors."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
import tenacity
from sqlalchemy import event
from sqlalchemy.engine import Engine

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed; SQLite needs none of it
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger("jobkit.store")

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 10_000

#: After a checkpoint SQLite truncates the write-ahead log to at most this size, so a WAL that grew
#: while a long reader held a snapshot does not keep its peak size for ever.
SQLITE_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


#: Session settings for the worker's hot-path connections (PostgreSQL), which run only the claim
#: and batches of completions.
#:
#: - The claim must walk the claim index in priority order and stop after LIMIT rows. Right after
#:   a bulk enqueue the table's statistics are stale, and the planner then prefers reading every
#:   pending row and sorting them, which makes each claim cost O(pending).
#: - Neither statement needs to wait for its WAL flush: if PostgreSQL crashes before the flush,
#:   the claim or the completion is lost, the job is found pending or rescued, and it runs again,
#:   which at-least-once delivery allows. Enqueues and every other write stay synchronous.
HOT_PATH_SESSION_OPTIONS = "-c enable_sort=off -c enable_bitmapscan=off -c synchronous_commit=off"


def create_hot_path_engine(url: str) -> Engine:
    """A small autocommit PostgreSQL engine for the claim and completion statements; see above."""
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
        connect_args={**_PG_CONNECT_ARGS, "options": options},
    )


def create_engine(url: str, *, autocommit: bool = False, small: bool = False) -> Engine:
    """An engine tuned for jobkit: WAL and IMMEDIATE transactions on SQLite, keepalives on PostgreSQL.

    ``autocommit`` (PostgreSQL) gives a pool of its own whose connections stay in autocommit,
    for single statements; toggling the mode on shared connections would cost on every checkout.
    ``small``: a pool of one or two connections, for the heartbeat alone.

    Parameters are left out of error messages: a failed statement may carry a payload of megabytes.
    """
    pool: dict[str, int] = {"pool_size": 1, "max_overflow": 1} if small else {}
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            hide_parameters=True,
            **({"pool_size": 8, "max_overflow": 32} | pool),
        )
        _configure_sqlite(engine)
        return engine
    if autocommit:
        return sa.create_engine(
            url,
            isolation_level="AUTOCOMMIT",
            connect_args=dict(_PG_CONNECT_ARGS),
            hide_parameters=True,
            **({"pool_size": 4, "max_overflow": 16} | pool),
        )
    return sa.create_engine(
        url,
        hide_parameters=True,
        **({"pool_size": 8, "max_overflow": 32} | pool),
        # No pre-ping: it would double the round trips of every short transaction. A dead pooled
        # connection fails its statement instead, is invalidated, and the store retries the call.
        connect_args=dict(_PG_CONNECT_ARGS),
    )


_PG_CONNECT_ARGS: dict[str, Any] = {
    # Dead peers are noticed in seconds rather than after the kernel's two-hour default.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "connect_timeout": 10,
}


def _configure_sqlite(engine: Engine) -> None:
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


@contextlib.contextmanager
def driver_connection(engine: Engine, *, immediate: bool) -> Iterator[Any]:
    """A cursor on a pooled DBAPI connection for one transaction of the hot path.

    ``immediate`` (SQLite) opens the transaction with BEGIN IMMEDIATE and commits it at the end;
    otherwise the connection is expected to be in autocommit (PostgreSQL's hot-path pools). A
    connection that broke is invalidated, so the pool never hands it out again; the driver's
    error is raised as it is and :func:`is_transient` knows it.
    """
    proxy = engine.raw_connection()
    cursor = None
    try:
        cursor = proxy.cursor()
        if immediate:
            cursor.execute("BEGIN IMMEDIATE")
        yield cursor
        if immediate:
            proxy.commit()
    except BaseException as exc:
        driver = proxy.dbapi_connection
        broken = isinstance(exc, Exception) and (
            engine.dialect.is_disconnect(exc, driver, cursor)  # type: ignore[arg-type]
            or bool(getattr(driver, "broken", False) or getattr(driver, "closed", False) is True)
        )
        if broken:
            proxy.invalidate(exc if isinstance(exc, Exception) else None)
        else:
            with contextlib.suppress(Exception):
                proxy.rollback()
        raise
    finally:
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()
        proxy.close()


#: PostgreSQL error codes worth retrying besides the connection class (08): a transaction that lost a
#: serialization or deadlock race, a lock wait that timed out, a server shutting down or full of
#: connections. Everything else the server answers (a data error, a full disk, a missing table) is
#: permanent: retrying it would only hide it.
_PG_TRANSIENT_CODES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})

#: SQLite messages of a lock held by another connection (SQLITE_BUSY, SQLITE_LOCKED); anything else
#: SQLite reports (a full disk, no such table, a constraint) is permanent.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: a locked SQLite file, a dropped or refused connection, a lost race.

    Data errors (NOT NULL, invalid text, a number out of range), a full disk and missing tables are
    permanent: they are raised at once, so the caller can isolate the row or report the fault.
    """
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if exc.orig is not None:
            return is_transient(exc.orig)
        return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and "connection" in str(exc).lower()
    if psycopg is not None and isinstance(exc, psycopg.Error):
        if isinstance(exc, psycopg.InterfaceError):
            return True  # the client side of a connection that is closed or broken
        code = exc.sqlstate
        if code is None:
            # No answer from the server at all: the connection failed or was cut.
            return isinstance(exc, psycopg.OperationalError)
        return code.startswith("08") or code in _PG_TRANSIENT_CODES
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(marker in text for marker in _SQLITE_TRANSIENT)
    return False


#: Set while some call is retrying a transient error, so an outage is logged once, not per statement.
_outage = threading.Event()


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    if _outage.is_set():
        log.debug("transient database error (attempt %d), retrying: %s", state.attempt_number, exc)
        return
    _outage.set()
    log.warning("database unavailable (%s); retrying with backoff", exc)


def retrying(max_seconds: float = 15.0) -> tenacity.Retrying:
    """The retry policy for one store call: exponential backoff on transient errors, up to ``max_seconds``."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential(multiplier=0.02, max=2.0) + tenacity.wait_random(0, 0.05),
        stop=tenacity.stop_after_delay(max_seconds),
        before_sleep=_log_retry,
        reraise=True,
    )


def call_with_retry(fn: Callable[[], T], max_seconds: float = 15.0) -> T:
    """Run ``fn`` (one whole transaction) again on transient errors.

    The first attempt runs outside tenacity: building a retry state per call would cost more than
    a short statement on the hot path, and only a failed first attempt needs one.
    """
    try:
        result = fn()
    except Exception as exc:
        if not is_transient(exc):
            raise
        result = retrying(max_seconds)(fn)
    if _outage.is_set():
        _outage.clear()
        log.warning("database reachable again")
    return result

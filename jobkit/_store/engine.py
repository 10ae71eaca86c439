"""Connections, transactions and retries: the Database every store module stands on.

Every public store operation is one transaction, retried as a whole on transient errors (a
locked SQLite file, a dropped PostgreSQL connection), written with one helper::

    @transaction(WRITE, retry=PATIENT)
    def resume_queue(self, conn: sa.Connection, queue: str) -> bool: ...

The decorated method receives the open connection (or driver cursor) after ``self``; callers
never see it. The mode says what is opened (see :data:`WRITE`, :data:`READ`, :data:`BEAT`,
:data:`HOT`, :data:`HOT_ONE`, :data:`RAW`), ``retry`` for how long transient errors are retried.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import sqlalchemy as sa
import tenacity

from jobkit._store.diagnosis import is_transient
from jobkit._store.dialect import Dialect
from jobkit._store.liveness import HeartbeatObserver
from jobkit._store.notify import Listener

log = logging.getLogger("jobkit.store")

T = TypeVar("T")
C = TypeVar("C")
P = ParamSpec("P")
DB = TypeVar("DB")

#: Seconds a call retries transient errors: a whole outage for callers that must not lose work,
#: a moment for loops that run again on their own schedule (heartbeat, rescue, progress).
PATIENT = 15.0
BRIEF = 1.0


class Mode(Generic[C]):
    """What a :func:`transaction` opens for the method it wraps."""

    def __init__(self, name: str, open: Callable[[Any], AbstractContextManager[C]]) -> None:
        # ``open`` takes the Database; typed Any because the decorated methods bind ``self`` generically.
        self.name = name
        self.open = open


#: A write transaction.
WRITE: Mode[sa.Connection] = Mode("write", lambda db: db.write())
#: Reads.
READ: Mode[sa.Connection] = Mode("read", lambda db: db.read())
#: A heartbeat, on its own pool.
BEAT: Mode[sa.Connection] = Mode("beat", lambda db: db.beat())
#: A driver cursor on the hot pool (claims and completions; PostgreSQL's skip the WAL flush).
HOT: Mode[Any] = Mode("hot", lambda db: db.hot())
#: A driver cursor on the single-statement pool (an enqueue stays synchronous on PostgreSQL).
HOT_ONE: Mode[Any] = Mode("hot-one", lambda db: db.hot(db.engines.single))
#: Nothing opened: the method gets the main engine and manages its own connection (a WAL checkpoint).
RAW: Mode[sa.Engine] = Mode("raw", lambda db: contextlib.nullcontext(db.engine))


def transaction(
    mode: Mode[C], *, retry: float = PATIENT
) -> Callable[[Callable[Concatenate[DB, C, P], T]], Callable[Concatenate[DB, P], T]]:
    """Run the decorated method in one transaction of ``mode``, again as a whole on transient errors.

    The method receives what the mode opened right after ``self``; ``retry`` is how many
    seconds transient errors are retried before the last one is raised.
    """

    def decorate(method: Callable[Concatenate[DB, C, P], T]) -> Callable[Concatenate[DB, P], T]:
        @functools.wraps(method)
        def run(self: DB, /, *args: P.args, **kwargs: P.kwargs) -> T:
            def attempt() -> T:
                with mode.open(self) as conn:
                    return method(self, conn, *args, **kwargs)

            return call_with_retry(attempt, retry)

        return run

    return decorate


class Database:
    """One database's engines, writer turns and channels; the operation classes build on it."""

    def __init__(self, url: str, dialect: Dialect, *, db_clock: bool, process_clock: Callable[[], float]) -> None:
        self.url = url
        self.dialect = dialect
        self.engines = dialect.engines(url)
        #: The engine of write transactions (everything on SQLite).
        self.engine = self.engines.main
        #: The URL as it may be printed: the password hidden.
        self.safe_url = self.engine.url.render_as_string(hide_password=True)
        #: Every time that decides eligibility or records a transition is the server's clock (PostgreSQL).
        self.db_clock = db_clock and dialect.server_clock
        #: This process's wall clock, which stamps its heartbeats on SQLite (injectable for skew tests).
        self.process_clock = process_clock
        #: What this process saw of other workers' heartbeats (SQLite's rescue rule; see liveness).
        self.heartbeats = HeartbeatObserver()
        self._write_lock = dialect.writer_turns()
        # The hot path's statements as the driver's own SQL text, rendered once.
        self._driver_sql: dict[sa.TextClause, str] = {}
        self.channel = "jobkit"
        self.events_channel = "jobkit_events"

    @property
    def is_postgres(self) -> bool:
        """True on PostgreSQL (for tests; the store itself asks its dialect)."""
        return self.dialect.name == "postgresql"

    @property
    def notifies_enqueues(self) -> bool:
        """True when every enqueue, from any process, wakes this process's workers with its run time."""
        return self.dialect.notifies_enqueues

    def name_channels(self) -> None:
        """Learn this database's NOTIFY channels: one for enqueues, one for job changes."""
        self.channel = self.dialect.channel(self.scalar)
        self.events_channel = f"{self.channel}_events"
        if len(self.events_channel) > 63:
            # PostgreSQL truncates identifiers at 63 bytes; a truncated name could equal the enqueue channel.
            self.events_channel = "jobkit_events_" + hashlib.sha1(self.channel.encode()).hexdigest()[:16]

    def listener(self) -> Listener:
        """A fresh listener for a notifier on this database (the dialect's kind, on its channels)."""
        return self.dialect.listener(self.engine.url, channel=self.channel, events_channel=self.events_channel)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engines.dispose()

    # -- connections -------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), this process's writers taking turns."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def read(self) -> AbstractContextManager[sa.Connection]:
        """A connection for reads (readers never queue behind writers)."""
        return self.dialect.read(self.engines)

    @contextlib.contextmanager
    def beat(self) -> Iterator[sa.Connection]:
        """A heartbeat's transaction, on the heartbeat pool and outside this process's writer turns."""
        with self.engines.heartbeat.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def hot(self, engine: sa.Engine | None = None) -> Iterator[Any]:
        """A driver cursor for one hot-path transaction on ``engine`` (default: the hot pool).

        The enqueue, claim and completion statements run thousands of times a second. Executing
        them through SQLAlchemy's Connection costs more Python time than SQLite takes to run them,
        so they go straight to the pooled DBAPI connection: SQLAlchemy still owns the pool, the
        dialect set-up (WAL, BEGIN IMMEDIATE, session options) and the SQL rendering.
        """
        with self._write_lock, self.dialect.driver(engine or self.engines.hot) as cursor:
            yield cursor

    def driver_text(self, statement: sa.TextClause) -> str:
        """``statement`` in the driver's own parameter style, rendered once."""
        sql = self._driver_sql.get(statement)
        if sql is None:
            sql = self._driver_sql[statement] = self.dialect.driver_text(statement, self.engine)
        return sql

    # -- small shared pieces -----------------------------------------------------------------

    def bind_now(self, now: float) -> float | None:
        """The value to bind as ``:now`` in statements written with the dialect's ``now``.

        None under ``db_clock``: the statement then takes the server's clock.
        """
        return None if self.db_clock else now

    def scalar(self, sql: str, **params: Any) -> Any:
        """Run one read statement and return the first column of its first row."""
        return self._scalar(sa.text(sql), params)

    @transaction(READ, retry=PATIENT)
    def _scalar(self, conn: sa.Connection, statement: sa.TextClause, params: dict[str, Any]) -> Any:
        return conn.execute(statement, params).scalar()

    def notify_jobs(self, conn: sa.Connection, job_ids: Iterable[int]) -> None:
        """Tell waiting handles in other processes that these jobs changed, at ``conn``'s commit."""
        self.dialect.notify_jobs(conn, self.events_channel, job_ids)


@contextlib.contextmanager
def driver_connection(engine: sa.Engine, *, immediate: bool) -> Iterator[Any]:
    """A cursor on a pooled DBAPI connection for one transaction of the hot path.

    ``immediate`` (SQLite) opens the transaction with BEGIN IMMEDIATE and commits it at the end;
    otherwise the connection is expected to be in autocommit (PostgreSQL's hot-path pools). A
    connection that broke is invalidated, so the pool never hands it out again; the driver's
    error is raised as it is and :func:`~jobkit._store.diagnosis.is_transient` knows it.
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


#: Set while some call is retrying a transient error, so an outage is logged once, not per statement.
_outage = threading.Event()


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    if _outage.is_set():
        log.debug("transient database error (attempt %d), retrying: %s", state.attempt_number, exc)
        return
    _outage.set()
    log.warning("database unavailable (%s); retrying with backoff", exc)


def retrying(max_seconds: float = PATIENT) -> tenacity.Retrying:
    """The retry policy for one store call: exponential backoff on transient errors, up to ``max_seconds``."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential(multiplier=0.02, max=2.0) + tenacity.wait_random(0, 0.05),
        stop=tenacity.stop_after_delay(max_seconds),
        before_sleep=_log_retry,
        reraise=True,
    )


def call_with_retry(fn: Callable[[], T], max_seconds: float = PATIENT) -> T:
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

"""The Dialect base class: what each database does its own way, over the SQL both share.

A dialect (``SQLiteDialect`` in sqlite.py, ``PostgresDialect`` in postgres.py) holds every
statement the store runs: the portable ones come from :class:`~jobkit._store.statements.Statements`,
built on the dialect's own clock and lock fragments; the ones that differ (the claim, inserts,
batch completion, NOTIFY and how to listen, engines and connection set-up, upserts, WAL checkpoints) are the
subclasses' own. The operation modules (jobs, queries, admin, maintenance) hold no SQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa

from jobkit._store.cron_statements import CronStatements
from jobkit._store.notify import Listener
from jobkit._store.records import Completion, NewJob
from jobkit._store.statements import Statement, Statements


class Dialect(CronStatements, Statements, ABC):
    """One database's SQL; subclasses fill in what differs."""

    #: SQLAlchemy's name of the backend ("sqlite", "postgresql").
    name: ClassVar[str]

    #: Whether the database has a clock of its own that every process can share (``db_clock``).
    server_clock: ClassVar[bool]

    #: Whether enqueues from any process wake workers with their run time (NOTIFY).
    notifies_enqueues: ClassVar[bool]

    #: The statement that pauses a queue unless it is paused already.
    insert_pause: ClassVar[sa.TextClause]

    #: Taken before a keyed claim, in its transaction, so keyed claims take turns (None: they already do).
    keyed_lock: ClassVar[sa.TextClause | None]

    #: The stager: moves up to ``:stage_limit`` pending rows that have fallen due (by ``:now``) from
    #: the scheduled index to the claim index; the claim runs it first, in its transaction, so its
    #: cost is one index probe. None where the claim statement stages as it claims (PostgreSQL).
    stage_statement: ClassVar[sa.TextClause | None]

    # -- what differs per database ---------------------------------------------------------------

    @abstractmethod
    def engines(self, url: str) -> Engines:
        """The engines a store on ``url`` uses, configured for this database."""

    @abstractmethod
    def writer_turns(self) -> AbstractContextManager[Any]:
        """What this process's writers hold while they write (SQLite: one at a time)."""

    @abstractmethod
    def read(self, engines: Engines) -> AbstractContextManager[sa.Connection]:
        """A connection for reads."""

    @abstractmethod
    def driver(self, engine: sa.Engine) -> AbstractContextManager[Any]:
        """A DBAPI cursor on ``engine`` for one transaction of the hot path."""

    @abstractmethod
    def driver_text(self, statement: sa.TextClause, engine: sa.Engine) -> str:
        """A statement as the driver's own SQL text."""

    @abstractmethod
    def claim(self, names: Sequence[str], queues: Sequence[str] | None) -> Statement:
        """The claim statement and its name and queue bind values (the caller adds worker, limit, now)."""

    @abstractmethod
    def claim_keyed(self, keyed: Sequence[str], queues: Sequence[str] | None) -> Statement:
        """The claim of jobs with a concurrency key, within each key's limit (the caller adds worker, limit, now)."""

    @abstractmethod
    def insert_one(self, row: NewJob, *, now: float, channel: str, payload: str, server_clock: bool) -> Statement:
        """The statement that inserts one job (and wakes workers where NOTIFY exists)."""

    @abstractmethod
    def insert_many(self, rows: Sequence[NewJob], *, now: float, server_clock: bool) -> Iterator[Statement]:
        """The statements that insert many jobs, ids returned in row order per statement."""

    @abstractmethod
    def complete_many(
        self, worker: str, now: float | None, rows: Sequence[Completion], channel: str = ""
    ) -> Iterator[Statement]:
        """The statements that complete a batch of one worker's jobs, lease checked row by row."""

    @abstractmethod
    def notify(self, conn: sa.Connection, channel: str, payload: str) -> None:
        """Wake listeners of ``channel`` when ``conn``'s transaction commits (where NOTIFY exists)."""

    @abstractmethod
    def notify_jobs(self, conn: sa.Connection, channel: str, job_ids: Iterable[int]) -> None:
        """Tell waiting handles these jobs changed, when ``conn``'s transaction commits."""

    @abstractmethod
    def channel(self, scalar: Callable[[str], Any]) -> str:
        """The NOTIFY channel of this database (``scalar`` runs one read)."""

    @abstractmethod
    def listener(self, url: sa.URL, *, channel: str, events_channel: str) -> Listener:
        """How a notifier hears other processes' changes to the database at ``url``, and tells them of its own."""

    @abstractmethod
    def lock_migrations(self, conn: sa.Connection) -> None:
        """Make concurrent migrations of one database take turns."""

    @abstractmethod
    def beat_params(self, process_clock: Callable[[], float]) -> dict[str, Any]:
        """Bind values of :attr:`beat` for a heartbeat written now."""

    @abstractmethod
    def checkpoint(self, engine: sa.Engine, turns: AbstractContextManager[Any]) -> bool:
        """Fold a write-ahead log back into the database; True when nothing is left to fold."""

    def observing(self, observer: Any) -> Any:
        """The heartbeat observer a rescue should judge by, or None to judge by the database's clock."""
        return observer


@dataclass(frozen=True, slots=True)
class Engines:
    """The pools one store uses; on SQLite one engine plays every role but the heartbeat's."""

    #: Write transactions (and everything on SQLite).
    main: sa.Engine
    #: Single atomic statements and reads.
    single: sa.Engine
    #: The claim and batch completions, through the driver.
    hot: sa.Engine
    #: Heartbeats only, so nothing else in the process can hold up the lease.
    heartbeat: sa.Engine

    def dispose(self) -> None:
        """Close every pooled connection of every engine (each once)."""
        for engine in {id(e): e for e in (self.main, self.single, self.hot, self.heartbeat)}.values():
            engine.dispose()

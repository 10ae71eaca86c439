"""The composed store: the operation classes over one Database, the dialect picked from the URL, migrations.

:class:`SQLStore` implements :class:`jobkit._store.Store`; open one with
:func:`jobkit._store.open_store`. Each operation lives in the module that owns it (jobs.py,
queries.py, admin.py, maintenance.py), all of its SQL in the dialect classes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from jobkit._store.admin import Admin
from jobkit._store.dialect import Dialect
from jobkit._store.insight import Insight
from jobkit._store.maintenance import Maintenance
from jobkit._store.postgres import PostgresDialect
from jobkit._store.queries import Queries
from jobkit._store.schedules import Schedules
from jobkit._store.sqlite import SQLiteDialect
from jobkit._store.unique import Unique

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "jobkit_alembic_version"


def dialect_for(url: str) -> Dialect:
    """The dialect of a database URL: PostgreSQL's for ``postgresql…``, SQLite's otherwise."""
    if sa.engine.make_url(url).get_backend_name() == PostgresDialect.name:
        return PostgresDialect()
    return SQLiteDialect()


class SQLStore(Queries, Admin, Maintenance, Unique, Schedules, Insight):
    """All SQL jobkit runs, for SQLite and PostgreSQL, behind :class:`jobkit._store.Store`.

    Example::

        store = SQLStore("sqlite:///jobs.sqlite3")
        store.enqueue([NewJob("emails.send", "{}", "default", 0, now, 3)], now=now)
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
        super().__init__(url, dialect_for(url), db_clock=db_clock, process_clock=process_clock)
        self._migrated = False
        self._migrate_lock = threading.Lock()
        if auto_migrate:
            self.migrate()
        self.name_channels()

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
                    self.dialect.lock_migrations(conn)
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            self._migrated = True

    def _current_revision(self) -> str | None:
        try:
            with self.read() as conn:
                return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        except sa.exc.DBAPIError:
            return None

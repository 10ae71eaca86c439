"""The start-up check: reach the database once, quickly, and see whether jobkit's tables are there.

A worker that starts against a database it cannot use should say so in one line and exit, not
retry for ever. The Store retries transient errors (a refused connection among them) for up to
15 seconds, which is right for a worker that is already running and rides out an outage, and
wrong at start-up. So this check opens one connection of its own, with a short connect timeout
and no retry, and closes it again.
"""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from jobkit.errors import DatabaseUnavailable, SchemaMissing

#: Seconds the start-up check waits for the database before it reports it unreachable.
PREFLIGHT_TIMEOUT = 5.0

JOBS_TABLE = "jobkit_jobs"
VERSION_TABLE = "jobkit_alembic_version"
MIGRATIONS = Path(__file__).parent / "migrations"


def display_url(url: str) -> str:
    """``url`` as it may be shown to people: the password replaced by ``***``."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<an unparseable database URL>"


def database_location(url: str) -> str:
    """Where ``url`` points, as the worker's banner shows it: the password hidden and, for SQLite, the
    absolute path of the file (a relative ``sqlite:///jobkit.sqlite3`` is resolved against the working
    directory, so an app and a worker started in different directories use different files)."""
    shown = display_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return shown
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or parsed.query.get("uri"):
        return shown
    path = Path(database)
    return shown if path.is_absolute() else f"{shown} (the file {path.resolve()})"


def check_database(url: str, *, require_schema: bool = True, timeout: float = PREFLIGHT_TIMEOUT) -> None:
    """Connect to ``url`` once and check jobkit's tables; raise instead of retrying.

    Raises :class:`~jobkit.errors.DatabaseUnavailable` when the database cannot be reached within
    ``timeout`` seconds (refused, unknown host, a PostgreSQL database or a SQLite directory that
    does not exist), and, with ``require_schema``, :class:`~jobkit.errors.SchemaMissing` when the
    jobs table is missing or the schema is older than this jobkit's migrations. Without
    ``require_schema`` (auto-migration will create the tables) only reachability is checked.
    """
    shown = display_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseUnavailable(shown, f"not a database URL ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite(parsed, shown, require_schema=require_schema, timeout=timeout)
    else:
        _check_postgres(parsed, shown, require_schema=require_schema, timeout=timeout)


def _first_line(exc: BaseException) -> str:
    """The driver's reason in one line (libpq adds hints on further lines)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else type(orig).__name__
    # libpq prefixes every reason with "connection failed: ..."; the rest is the useful part.
    return text.removeprefix("connection failed: ")


#: What to do about the driver's commonest reasons, said after them.
_FIXES = {
    "Connection refused": "the port is closed: is PostgreSQL running, and listening on that host and port?",
    "does not exist": "create it (createdb) or fix the database name in the URL",
    "password authentication failed": "check the user and password in the URL",
}


def _with_fix(reason: str) -> str:
    for symptom, fix in _FIXES.items():
        if symptom in reason:
            return f"{reason} ({fix})"
    return reason


def _check_sqlite(parsed: sa.URL, shown: str, *, require_schema: bool, timeout: float) -> None:
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("uri"):
        return  # an in-memory or URI-addressed database: nothing on disk to check
    path = Path(database)
    directory = path.parent.resolve()
    if not directory.is_dir():
        raise DatabaseUnavailable(shown, f"the directory {directory} does not exist")
    if not path.exists():
        if require_schema:
            raise SchemaMissing(shown, "has no jobkit tables (the file does not exist)")
        if not os.access(directory, os.W_OK):
            raise DatabaseUnavailable(shown, f"the directory {directory} is not writable")
        return
    # Read-only, so that the check never creates or changes a file; reading the catalogue also
    # tells a database from a file that is not one.
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
        try:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                    (JOBS_TABLE, VERSION_TABLE),
                )
            }
            if not require_schema:
                return
            if JOBS_TABLE not in tables:
                raise SchemaMissing(shown)
            row = (
                conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone() if VERSION_TABLE in tables else None
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(shown, _first_line(exc)) from None
    _check_revision(None if row is None else str(row[0]), shown)


def _check_postgres(parsed: sa.URL, shown: str, *, require_schema: bool, timeout: float) -> None:
    # Keep the URL's own session options (a search_path, say): connect_args would replace them.
    given = parsed.query.get("options")
    given = " ".join(given) if isinstance(given, tuple) else given
    limit = f"-c statement_timeout={math.ceil(timeout * 1000)}"
    engine = sa.create_engine(
        parsed.difference_update_query(["options"]),
        poolclass=NullPool,
        # libpq counts whole seconds and treats anything below 2 as 2.
        connect_args={"connect_timeout": max(2, math.ceil(timeout)), "options": f"{given} {limit}" if given else limit},
    )
    try:
        with engine.connect() as conn:
            if not require_schema:
                return
            # to_regclass follows the search_path, as every statement of the store does.
            if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": JOBS_TABLE}).scalar() is None:
                raise SchemaMissing(shown)
            version = None
            if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": VERSION_TABLE}).scalar() is not None:
                version = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except sa.exc.DBAPIError as exc:
        raise DatabaseUnavailable(shown, _with_fix(_first_line(exc))) from None
    except ImportError as exc:
        raise DatabaseUnavailable(shown, f"the database driver is not installed ({exc})") from None
    finally:
        engine.dispose()
    _check_revision(None if version is None else str(version), shown)


def _check_revision(revision: str | None, shown: str) -> None:
    """Refuse a schema that an older jobkit created; accept head and revisions this jobkit does not know."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    if revision == head:
        return
    if revision is None:
        raise SchemaMissing(shown, f"has jobkit tables but no recorded migration (this jobkit needs {head})")
    known = {script.revision for script in scripts.walk_revisions()}
    if revision in known:
        raise SchemaMissing(shown, f"has jobkit tables at migration {revision}, this jobkit needs {head}")
    # A newer jobkit migrated it (a rolling deploy): this worker's columns are still there.

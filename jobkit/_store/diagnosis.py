"""What a database error means: transient (worth retrying) or permanent, and "jobkit's tables are missing".

Told apart by the drivers' own error classes, SQLSTATE codes and SQLite's messages, never by
guessing from text that a server may phrase differently.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed; SQLite needs none of it
    psycopg = None  # type: ignore[assignment]

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


def is_missing_schema(exc: BaseException) -> bool:
    """True when the error says jobkit's tables do not exist (never migrated, or dropped under us)."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if psycopg is not None and isinstance(orig, psycopg.errors.UndefinedTable):
        return True
    return isinstance(orig, sqlite3.OperationalError) and "no such table: jobkit_" in str(orig)

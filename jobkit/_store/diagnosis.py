"""What a database error means for the worker: told apart by the driver's own error classes and codes."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed
    psycopg = None  # type: ignore[assignment]


def is_missing_schema(exc: BaseException) -> bool:
    """True when the error says jobkit's tables do not exist (never migrated, or dropped under us)."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if psycopg is not None and isinstance(orig, psycopg.errors.UndefinedTable):
        return True
    return isinstance(orig, sqlite3.OperationalError) and "no such table: jobkit_" in str(orig)

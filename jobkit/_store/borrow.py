"""A SQLAlchemy connection over a DB-API connection that another library owns, to join its transaction.

A framework (Django) holds its own connection and transaction; jobkit's writes can take part in
that transaction only on that very connection. The owner decides commit and rollback, so the
connection handed to SQLAlchemy ignores both: SQLAlchemy rolls back when a connection is closed or
returned to its pool, and that must never end the owner's transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool


class _Owned:
    """A DB-API connection whose transaction belongs to someone else: commit and rollback do nothing."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def commit(self) -> None:
        """The owner commits."""

    def rollback(self) -> None:
        """The owner rolls back."""

    def close(self) -> None:
        """The owner closes."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


_lock = threading.Lock()
#: One engine per borrowed connection (the last few): building an engine inspects the server on
#: its first connect, and the dialect adds hooks to the connection, which must happen once per connection.
_engines: dict[int, tuple[Any, sa.Engine]] = {}
_KEEP = 16


def _engine_for(url: str, raw: Any) -> sa.Engine:
    key = id(raw)
    with _lock:
        found = _engines.get(key)
        if found is not None and found[0] is raw and str(found[1].url) == str(sa.make_url(url)):
            return found[1]
        owned = _Owned(raw)
        extra: dict[str, Any] = {}
        if sa.make_url(url).get_backend_name() == "postgresql":
            # The hstore probe needs psycopg's own class, not the wrapper; jobkit stores no hstore.
            extra["use_native_hstore"] = False
        engine = sa.create_engine(url, creator=lambda: owned, poolclass=StaticPool, pool_reset_on_return=None, **extra)
        if len(_engines) >= _KEEP:
            _engines.pop(next(iter(_engines)))
        _engines[key] = (raw, engine)
        return engine


@contextmanager
def borrowed_connection(url: str, dbapi_connection: Any) -> Iterator[sa.Connection]:
    """A SQLAlchemy connection on ``dbapi_connection`` (a ``url`` database) inside its owner's transaction.

    Whatever is written through it commits or rolls back with the owner's transaction; closing
    it leaves that transaction and the connection as they were.

    Example::

        with borrowed_connection(url, django_connection.connection) as conn:
            store.enqueue(rows, now=now, connection=conn)
    """
    with _engine_for(url, dbapi_connection).connect() as conn:
        yield conn

"""Which database the backend uses, and whether it is the one Django's connection is on.

The backend's URL is ``OPTIONS["DATABASE_URL"]``, else ``JOBKIT_DATABASE_URL``, else the URL of
Django's ``default`` database. When that URL names the database a Django alias is connected to,
an enqueue inside that alias's transaction is written on Django's own connection, so the job
exists exactly when the transaction commits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_SQLITE_ENGINES = ("django.db.backends.sqlite3",)
_POSTGRES_ENGINES = ("django.db.backends.postgresql",)


def url_of_alias(alias: str) -> str | None:
    """The SQLAlchemy URL of Django's database ``alias``, or None when jobkit cannot use that engine."""
    databases: dict[str, dict[str, Any]] = settings.DATABASES
    config = databases.get(alias)
    if config is None:
        return None
    engine = config.get("ENGINE", "")
    if engine in _SQLITE_ENGINES:
        name = str(config.get("NAME", ""))
        if not name or name == ":memory:" or name.startswith("file:"):
            return None  # an in-memory database lives in one connection: a worker can never see it
        return f"sqlite:///{Path(name).resolve()}"
    if engine in _POSTGRES_ENGINES:
        user = quote(str(config.get("USER") or ""), safe="")
        password = quote(str(config.get("PASSWORD") or ""), safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = str(config.get("HOST") or "")
        port = f":{config['PORT']}" if config.get("PORT") else ""
        name = quote(str(config.get("NAME") or ""), safe="")
        url = f"postgresql+psycopg://{credentials}{host}{port}/{name}"
        options = (config.get("OPTIONS") or {}).get("options")
        if options:
            url += f"?options={quote(str(options), safe='')}"
        return url
    return None


def backend_url(options: dict[str, Any]) -> str:
    """The backend's database: OPTIONS["DATABASE_URL"], JOBKIT_DATABASE_URL, or Django's default database."""
    given = options.get("DATABASE_URL") or os.environ.get("JOBKIT_DATABASE_URL")
    if given:
        return str(given)
    derived = url_of_alias("default")
    if derived is None:
        raise ImproperlyConfigured(
            "jobkit's Django backend needs a database: set OPTIONS['DATABASE_URL'] or JOBKIT_DATABASE_URL, "
            "or make Django's default database SQLite (a file) or PostgreSQL"
        )
    return derived


def _identity(url: str) -> tuple[str, str, str, str, str] | None:
    """What makes two URLs one database: dialect, host, port, database (or SQLite file) and options."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        path = unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        return ("sqlite", "", "", str(Path(path).resolve()), "") if path else None
    if scheme in ("postgresql", "postgres"):
        return ("postgresql", parts.hostname or "", str(parts.port or 5432), unquote(parts.path), unquote(parts.query))
    return None


def same_database(url: str, other: str | None) -> bool:
    """True when ``url`` and ``other`` reach the same database (the same SQLite file, or PostgreSQL database)."""
    if other is None:
        return False
    mine = _identity(url)
    return mine is not None and mine == _identity(other)

"""Django set-up for the suite, and a ``django_db`` fixture: Django and jobkit on a fresh database.

Every test runs on SQLite and on PostgreSQL (``db_url`` from tests/conftest.py): Django's
``default`` database is pointed at that database, so jobkit's backend shares it with Django.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.project.settings")

import django

django.setup()

from asgiref.local import Local  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402
from django.tasks import task_backends  # noqa: E402

from tests.django.project.settings import database_for  # noqa: E402


def _reset_connections(databases: dict[str, Any]) -> None:
    """Point Django at ``databases`` (settings are read once per process, so the handler is rebuilt)."""
    connections.close_all()
    settings.DATABASES = databases
    connections.settings = connections.configure_settings(databases)
    connections._connections = Local(connections.thread_critical)


def _reset_backends() -> None:
    for backend in task_backends.all(initialized_only=True):
        backend.close()
    task_backends._connections = Local()


@pytest.fixture
def django_db(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Django's default database and jobkit's backends on one fresh database; ``other`` is a second SQLite file."""
    monkeypatch.setenv("JOBKIT_TEST_DJANGO_LOG", str(tmp_path / "events.log"))
    monkeypatch.delenv("JOBKIT_DATABASE_URL", raising=False)
    _reset_connections(
        {
            "default": database_for(db_url),
            "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "other.sqlite3")},
        }
    )
    _reset_backends()
    try:
        yield db_url
    finally:
        _reset_backends()
        connections.close_all()

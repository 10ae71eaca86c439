"""Settings of the test project: the database is JOBKIT_TEST_DJANGO_DB (a jobkit URL), tasks on jobkit."""

from __future__ import annotations

import os
import tempfile
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: jobkit timings compressed for tests (as tests/conftest.py's FAST).
FAST = {
    "poll_interval": 0.2,
    "heartbeat_interval": 0.5,
    "rescue_after": 3.0,
    "rescue_interval": 0.5,
    "cancel_check_interval": 0.1,
    "shutdown_grace": 5.0,
}


def database_for(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for a jobkit URL (SQLite file, or PostgreSQL with its search_path)."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path)[1:]}
    options = {"options": value[0]} if (value := parse_qs(parts.query).get("options")) else {}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path)[1:],
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
    }


def _at_once(attempt: int) -> float:
    return 0.0


def tasks_setting() -> dict[str, Any]:
    """Backends on one database: ``default`` with jobkit's retry policy, ``noretry`` that never retries,
    ``quick`` that retries at once."""
    queues = ["default", "emails"]
    return {
        "default": {
            "BACKEND": "jobkit.contrib.django.JobkitBackend",
            "QUEUES": queues,
            "OPTIONS": {"JOBKIT": FAST, "TASK_RESCAN": 0.5},
        },
        "noretry": {
            "BACKEND": "jobkit.contrib.django.JobkitBackend",
            "QUEUES": queues,
            "OPTIONS": {"JOBKIT": FAST, "TASK_DEFAULTS": {"max_retries": 0}},
        },
        "quick": {
            "BACKEND": "jobkit.contrib.django.JobkitBackend",
            "QUEUES": queues,
            "OPTIONS": {"JOBKIT": FAST, "TASK_DEFAULTS": {"max_retries": 2, "backoff": _at_once}},
        },
    }


DEFAULT_DB = os.environ.get("JOBKIT_TEST_DJANGO_DB") or f"sqlite:///{tempfile.gettempdir()}/jobkit-django-tests.sqlite3"
SECRET_KEY = "jobkit-tests"
USE_TZ = True
INSTALLED_APPS = ["jobkit.contrib.django", "tests.django.apps.TestTasksConfig"]
DATABASES = {"default": database_for(DEFAULT_DB)}
TASKS = tasks_setting()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

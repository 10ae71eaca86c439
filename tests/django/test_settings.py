"""Where the backend stores jobs (OPTIONS, then JOBKIT_DATABASE_URL, then Django's default database) and
what ENQUEUE_ON_COMMIT=False does."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.tasks import task_backends
from django.tasks.exceptions import InvalidTask
from django.test import override_settings

from jobkit.contrib.django import JobkitBackend
from jobkit.contrib.django._database import same_database, url_of_alias
from tests.django import tasks


def backend(**options: object) -> JobkitBackend:
    return JobkitBackend("default", {"QUEUES": ["default", "emails"], "OPTIONS": options})


def test_options_url_comes_first(django_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OPTIONS["DATABASE_URL"] wins over JOBKIT_DATABASE_URL and Django's database."""
    monkeypatch.setenv("JOBKIT_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    assert backend(DATABASE_URL=f"sqlite:///{tmp_path / 'opt.sqlite3'}").database_url.endswith("opt.sqlite3")


def test_environment_url_comes_next(django_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without OPTIONS["DATABASE_URL"], JOBKIT_DATABASE_URL is used."""
    monkeypatch.setenv("JOBKIT_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    assert backend().database_url.endswith("env.sqlite3")


def test_django_default_database_is_the_fallback(django_db: str) -> None:
    """With neither, the backend uses Django's default database (the same database, not a copy)."""
    assert same_database(backend().database_url, django_db)
    assert same_database(backend().database_url, url_of_alias("default"))
    assert not same_database(backend().database_url, url_of_alias("other"))


def test_unknown_task_defaults_are_refused(django_db: str) -> None:
    """A misspelt TASK_DEFAULTS key is refused when the backend is built."""
    with pytest.raises(InvalidTask, match="max_retry"):
        backend(TASK_DEFAULTS={"max_retry": 1})


def test_enqueue_on_commit_off_stores_at_once(django_db: str, tmp_path: Path) -> None:
    """With ENQUEUE_ON_COMMIT False a transaction on another database does not hold the job back."""
    own = backend(ENQUEUE_ON_COMMIT=False)
    try:
        with transaction.atomic(using="other"):
            result = own.enqueue(tasks.add, (1, 2), {})
            assert result.id
            assert own.queue.job_info(int(result.id)) is not None
    finally:
        own.close()


def test_backend_instances_of_threads_share_one_queue(django_db: str) -> None:
    """Django builds a backend per thread; they share one jobkit queue (one engine, one pool)."""
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append((task_backends["default"], task_backends["default"].queue)))
    thread.start()
    thread.join()
    [(other, other_queue)] = seen
    assert other is not task_backends["default"]
    assert other_queue is task_backends["default"].queue


def test_system_checks_pass_on_a_sound_backend(django_db: str) -> None:
    """`manage.py check` finds nothing wrong with the test project's backends."""
    assert task_backends["default"].check() == []


def test_system_checks_report_bad_jobkit_settings(django_db: str) -> None:
    """A jobkit setting out of range is a system-check error naming the backend."""
    [problem] = backend(JOBKIT={"concurrency": 0}).check()
    assert problem.id == "jobkit.E001" and "concurrency" in problem.msg


def test_worker_command_refuses_an_unknown_backend(django_db: str) -> None:
    """`jobkit_worker --backend nope` is a command error naming the alias."""
    with pytest.raises(CommandError, match="nope"):
        call_command("jobkit_worker", backend="nope")


def test_worker_command_refuses_another_kind_of_backend(django_db: str) -> None:
    """A TASKS alias that is not jobkit's cannot be worked by jobkit."""
    tasks_setting = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    with override_settings(TASKS=tasks_setting), pytest.raises(CommandError, match="ImmediateBackend"):
        call_command("jobkit_worker")

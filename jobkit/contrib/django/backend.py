"""``JobkitBackend``: Django's tasks framework (``django.tasks``) on jobkit's queue."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued

from jobkit import JobQueue, Settings
from jobkit._enqueue import CallOptions
from jobkit._store import borrowed_connection
from jobkit.contrib.django._database import backend_url, same_database, url_of_alias
from jobkit.contrib.django._tasks import PREFIX, job_class, resolve, result_of
from jobkit.errors import JobDefinitionError

#: The queues of the backends, shared by their instances: Django builds a backend per thread (and per
#: async context), and one engine with its pool per database is what jobkit wants.
_queues: dict[tuple[str, str, str], JobQueue] = {}
_queues_lock = threading.Lock()

#: The jobkit job options a task may carry (``@task(max_retries=5, timeout=30)`` on Django >= 6.1).
TASK_OPTIONS = ("max_retries", "timeout", "backoff")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobkitTask(Task):  # type: ignore[misc]
    """A Django task that carries jobkit's options; the backend's ``task_class``.

    On Django 6.1 and later ``@task(...)`` passes extra keywords to it::

        @task(max_retries=5, timeout=30, backoff="linear")
        def send_invoice(invoice_id: int) -> None: ...

    Options left out take the backend's ``OPTIONS["TASK_DEFAULTS"]``, then jobkit's defaults
    (3 retries with exponential backoff, no timeout).
    """

    max_retries: int | None = None
    timeout: float | timedelta | None = None
    backoff: str | None = None


class JobkitBackend(BaseTaskBackend):  # type: ignore[misc]
    """A ``django.tasks`` backend whose tasks are jobkit jobs.

    Example (settings.py)::

        INSTALLED_APPS = [..., "jobkit.contrib.django"]
        TASKS = {
            "default": {
                "BACKEND": "jobkit.contrib.django.JobkitBackend",
                "QUEUES": ["default", "emails"],
                "OPTIONS": {"DATABASE_URL": "postgresql+psycopg://localhost/app"},
            }
        }

    Then ``send_invoice.enqueue(42)`` stores a job and ``python manage.py jobkit_worker`` runs it.
    """

    task_class = JobkitTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.enqueue_on_commit: bool = bool(self.options.get("ENQUEUE_ON_COMMIT", True))
        self.task_defaults: dict[str, Any] = dict(self.options.get("TASK_DEFAULTS", {}))
        unknown = set(self.task_defaults) - set(TASK_OPTIONS)
        if unknown:
            raise InvalidTask(f"TASK_DEFAULTS: unknown options {sorted(unknown)}; known: {', '.join(TASK_OPTIONS)}")
        #: jobkit settings for this backend's queue (``concurrency``, ``poll_interval`` …), as ``Settings`` takes them.
        self.settings_overrides: dict[str, Any] = {k.lower(): v for k, v in self.options.get("JOBKIT", {}).items()}

    # -- the queue -------------------------------------------------------------------------------

    @cached_property
    def database_url(self) -> str:
        """The database this backend's jobs are stored in."""
        return Settings(database_url=backend_url(self.options)).database_url

    @property
    def queue(self) -> JobQueue:
        """This backend's jobkit queue (opened on first use; enqueue and results go through it)."""
        key = self._queue_key()
        with _queues_lock:
            found = _queues.get(key)
            if found is None:
                found = _queues[key] = JobQueue(database_url=self.database_url, **self.settings_overrides)
            return found

    def _queue_key(self) -> tuple[str, str, str]:
        return (self.alias, self.database_url, repr(sorted(self.settings_overrides.items())))

    def worker_queue(self, **overrides: Any) -> JobQueue:
        """A new queue for a worker of this backend: its settings, ``overrides`` on top, its QUEUES worked."""
        settings: dict[str, Any] = {"queues": tuple(sorted(self.queues)) or None, **self.settings_overrides}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return JobQueue(database_url=self.database_url, **settings)

    def close(self) -> None:
        """Release the queue's connections (every backend instance of this alias shares them)."""
        with _queues_lock:
            found = _queues.pop(self._queue_key(), None)
        if found is not None:
            found.close()

    def check(self, **kwargs: Any) -> list[Any]:
        """Django's system checks (``manage.py check``): the database and the jobkit settings resolve."""
        problems: list[Any] = []
        try:
            Settings(database_url=backend_url(self.options), **self.settings_overrides)
        except (ImproperlyConfigured, ValueError) as exc:
            problems.append(checks.Error(f"TASKS[{self.alias!r}]: {exc}", id="jobkit.E001"))
        if not apps.is_installed("jobkit.contrib.django"):
            problems.append(
                checks.Warning(
                    f"TASKS[{self.alias!r}] uses jobkit, but 'jobkit.contrib.django' is not in INSTALLED_APPS",
                    hint="add it to INSTALLED_APPS to get `manage.py jobkit_worker`",
                    id="jobkit.W001",
                )
            )
        return problems

    # -- tasks ------------------------------------------------------------------------------------

    def validate_task(self, task: Any) -> None:
        """Django's checks, then jobkit's options; registers the task's job type, so a worker can run it."""
        super().validate_task(task)
        try:
            job_class(task, self.job_options(task))
        except JobDefinitionError as exc:
            raise InvalidTask(str(exc)) from exc

    def job_options(self, task: Any) -> dict[str, Any]:
        """The jobkit options of ``task``: its own, then the backend's TASK_DEFAULTS."""
        options = {key: value for key, value in self.task_defaults.items() if value is not None}
        for key in TASK_OPTIONS:
            value = getattr(task, key, None)
            if value is not None:
                options[key] = value
        if isinstance(options.get("timeout"), timedelta):
            options["timeout"] = options["timeout"].total_seconds()
        return options

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store the task as a jobkit job; returns its ``TaskResult`` (READY).

        Inside a transaction on the database jobkit uses, the job is written in that transaction.
        Inside a transaction on another database, it is written when that commits
        (``ENQUEUE_ON_COMMIT``, the default; the result's ``id`` is set then) or at once.
        """
        self.validate_task(task)
        job_type = job_class(task, self.job_options(task)).job_type()
        # TaskResult normalises args and kwargs to JSON, refusing what JSON cannot hold.
        result = TaskResult(
            task=task,
            id="",
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        payload = {"args": result.args, "kwargs": result.kwargs}
        # Django's priorities run higher first (-100..100); jobkit's lower first: negated, nothing lost.
        call = CallOptions(queue=task.queue_name, priority=-int(task.priority), run_at=task.run_after)

        def store(connection: Any = None) -> None:
            handle = self.queue.enqueue_jobs(job_type, [payload], call, connection)[0]
            object.__setattr__(result, "id", str(handle.id))
            object.__setattr__(result, "enqueued_at", datetime.now(UTC))
            task_enqueued.send(type(self), task_result=result)

        alias = self._atomic_alias()
        if alias is None:
            store()
        elif same_database(self.database_url, url_of_alias(alias)):
            django_connection = connections[alias]
            django_connection.ensure_connection()
            with borrowed_connection(self.database_url, django_connection.connection) as conn:
                store(conn)
        elif self.enqueue_on_commit:
            transaction.on_commit(store, using=alias)
        else:
            store()
        return result

    def _atomic_alias(self) -> str | None:
        """The Django database alias whose transaction the caller is in (the jobkit one first), or None."""
        inside: list[str] = [str(alias) for alias in connections if connections[alias].in_atomic_block]
        for alias in inside:
            if same_database(self.database_url, url_of_alias(alias)):
                return alias
        return inside[0] if inside else None

    async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """``enqueue`` for async callers: the write runs on a thread, never on the event loop."""
        return await asyncio.to_thread(self.enqueue, task, args, kwargs)

    def get_result(self, result_id: Any) -> Any:
        """The ``TaskResult`` of a job, from any process; raises ``TaskResultDoesNotExist``."""
        try:
            job_id = int(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        info = self.queue.job_info(job_id)
        if info is None or not info.name.startswith(PREFIX):
            raise TaskResultDoesNotExist(result_id)
        try:
            task = resolve(info.name[len(PREFIX) :])
        except ValueError as exc:
            raise TaskResultDoesNotExist(f"{result_id}: {exc}") from exc
        try:
            # The task as this job was enqueued: its priority and queue may differ from the definition's.
            task = task.using(priority=-info.priority, queue_name=info.queue)
        except InvalidTask:
            pass  # stored by an older definition (a queue since removed from QUEUES): keep the definition's
        return result_of(info, task, self.alias)

    async def aget_result(self, result_id: Any) -> Any:
        """``get_result`` for async callers, read on a thread."""
        return await asyncio.to_thread(self.get_result, result_id)

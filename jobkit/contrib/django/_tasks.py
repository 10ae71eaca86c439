"""A Django task as a jobkit job type, and a jobkit row as a Django ``TaskResult``.

Each task becomes one job type named ``django:<module_path>`` whose stored arguments are
``{"args": [...], "kwargs": {...}}``. The worker resolves the name by importing the task's module
path, and runs the task's function there, sending ``task_started`` and ``task_finished`` from the
worker process. The type is registered when the task is defined (``validate_task``), so a worker
that imported the tasks' modules claims their jobs.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.db import close_old_connections
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from jobkit import BaseJob, JobInfo, JobState, job

#: The job name of a Django task is this prefix and the task's module path.
PREFIX = "django:"

_STATUS = {
    JobState.PENDING: TaskResultStatus.READY,
    JobState.PAUSED: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.COMPLETED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}


class ReturnValueError(TypeError):
    """A task returned a value that JSON cannot hold; the task fails at once (no retry would change it)."""


class _TaskJob(BaseJob[dict[str, Any]]):
    """Runs one Django task; subclassed once per task, with ``module_path`` set."""

    module_path: ClassVar[str]

    def perform(self, args: dict[str, Any]) -> Any:
        task, result, call_args, call_kwargs = self._begin(args)
        try:
            value = task.func(*call_args, **call_kwargs)
        except BaseException as exc:
            self._failed(task, result, exc)
            raise
        return self._succeeded(task, result, value)

    def _begin(self, args: dict[str, Any]) -> tuple[Any, Any, list[Any], dict[str, Any]]:
        # A worker thread keeps Django connections across jobs, as a request thread does: drop the
        # ones that are too old or broken first, as Django does between requests.
        close_old_connections()
        task = resolve(self.module_path)
        backend = task.get_backend()
        result = backend.get_result(str(self.job_id)) if self.job_id is not None else None
        if result is None:  # run inline (perform_now): there is no row to read
            result = _fresh_result(task, args, backend.alias)
        task_started.send(type(backend), task_result=result)
        call_args = list(args.get("args", []))
        call_kwargs = dict(args.get("kwargs", {}))
        if task.takes_context:
            call_args.insert(0, TaskContext(task_result=result))
        return task, result, call_args, call_kwargs

    def _failed(self, task: Any, result: Any, exc: BaseException) -> None:
        kind = type(exc)
        error = TaskError(exception_class_path=f"{kind.__module__}.{kind.__qualname__}", traceback="")
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        object.__setattr__(result, "finished_at", datetime.now(UTC))
        result.errors.append(error)
        try:
            task_finished.send(type(task.get_backend()), task_result=result)
        finally:
            close_old_connections()

    def _succeeded(self, task: Any, result: Any, value: Any) -> Any:
        try:
            value = normalize_json(value)
        except (TypeError, ValueError) as exc:
            failure = ReturnValueError(f"{task.module_path} returned a value JSON cannot hold: {exc}")
            self._failed(task, result, failure)
            raise failure from exc
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "finished_at", datetime.now(UTC))
        object.__setattr__(result, "_return_value", value)
        try:
            task_finished.send(type(task.get_backend()), task_result=result)
        finally:
            close_old_connections()
        return value


class _AsyncTaskJob(_TaskJob):
    """Runs one ``async def`` Django task on the worker's event loop."""

    async def perform(self, args: dict[str, Any]) -> Any:
        # Reading the row and sending signals touch the database: off the event loop.
        task, result, call_args, call_kwargs = await asyncio.to_thread(self._begin, args)
        try:
            value = await task.func(*call_args, **call_kwargs)
        except BaseException as exc:
            await asyncio.to_thread(self._failed, task, result, exc)
            raise
        return await asyncio.to_thread(self._succeeded, task, result, value)


_lock = threading.Lock()
_job_classes: dict[str, tuple[tuple[Any, ...], type[_TaskJob]]] = {}


def job_class(task: Any, options: dict[str, Any]) -> type[_TaskJob]:
    """The jobkit job class of ``task`` with jobkit ``options`` (registered on first use; cached)."""
    path = task.module_path
    signature = (task.func, tuple(sorted(options.items())))
    with _lock:
        found = _job_classes.get(path)
        if found is not None and found[0] == signature:
            return found[1]
        base = _AsyncTaskJob if asyncio.iscoroutinefunction(task.func) else _TaskJob
        # One class per task, with a qualname of its own: the registry tells job types apart by origin.
        cls = type(f"DjangoTask[{path}]", (base,), {"module_path": path, "__module__": __name__})
        declared = job(name=PREFIX + path, discard_on=(ReturnValueError,), **options)(cls)
        _job_classes[path] = (signature, declared)
        return declared


def resolve(module_path: str) -> Any:
    """The Django ``Task`` at ``module_path``; ValueError when there is none."""
    try:
        found = import_string(module_path)
    except ImportError as exc:
        raise ValueError(f"{module_path!r} cannot be imported: {exc}") from exc
    if not isinstance(found, Task):
        raise ValueError(f"{module_path!r} is not a Django task (got {type(found).__name__})")
    return found


def _fresh_result(task: Any, args: dict[str, Any], alias: str) -> Any:
    return TaskResult(
        task=task,
        id="",
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=datetime.now(UTC),
        finished_at=None,
        last_attempted_at=datetime.now(UTC),
        args=list(args.get("args", [])),
        kwargs=dict(args.get("kwargs", {})),
        backend=alias,
        errors=[],
        worker_ids=[],
    )


def _error_of(entry: dict[str, Any]) -> Any:
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        # Rows written before error entries carried the path: a builtin's name still resolves.
        name = str(entry.get("type") or "Exception")
        path = f"builtins.{name}" if isinstance(getattr(builtins, name, None), type) else name
    text = entry.get("traceback") or entry.get("message") or ""
    return TaskError(exception_class_path=path, traceback=str(text))


def _worker_ids(info: JobInfo) -> list[str]:
    # One id per attempt: each failed attempt's error entry names its worker; the latest is the row's.
    known = {e.get("attempt"): e.get("worker") for e in info.errors if isinstance(e, dict) and e.get("worker")}
    return [str(known.get(n) or info.worker_id or "") for n in range(1, info.attempt + 1)]


def result_of(info: JobInfo, task: Any, alias: str) -> Any:
    """The Django ``TaskResult`` of a jobkit row of ``task``."""
    status = _STATUS[JobState(info.status)]
    terminal = info.terminal
    result = TaskResult(
        task=task,
        id=str(info.id),
        status=status,
        enqueued_at=info.created_at,
        started_at=info.started_at,
        finished_at=info.finished_at if terminal else None,
        last_attempted_at=info.started_at,
        args=list(info.args.get("args", [])),
        kwargs=dict(info.args.get("kwargs", {})),
        backend=alias,
        errors=[_error_of(e) for e in info.errors if isinstance(e, dict)],
        worker_ids=_worker_ids(info),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", info.result)
    return result

"""Conformance of JobkitBackend with django.tasks, modelled on what Django's own backend tests check.

Jobs are run by a jobkit worker in this process (``run_once``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import django
import pytest
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist

from jobkit import JobQueue
from jobkit.contrib.django import JobkitBackend
from tests.django import tasks


@pytest.fixture
def worker(django_db: str) -> Iterator[JobQueue]:
    """A worker queue of the default backend, one job at a time (claim order is run order)."""
    backend = task_backends["default"]
    assert isinstance(backend, JobkitBackend)
    queue = backend.worker_queue(concurrency=1)
    try:
        yield queue
    finally:
        queue.close()


def events(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "events.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_backend_supports_everything() -> None:
    """The backend declares defer, async tasks, results and priorities."""
    backend = task_backends["default"]
    assert (backend.supports_defer, backend.supports_async_task, backend.supports_get_result) == (True, True, True)
    assert backend.supports_priority is True


def test_enqueue_runs_and_returns_the_value(worker: JobQueue) -> None:
    """An enqueued task is READY, then SUCCESSFUL with its return value once a worker ran it."""
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert result.args == [2, 3] and result.kwargs == {}
    assert worker.run_once() == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.is_finished and result.errors == []


def test_status_is_running_while_the_task_runs(worker: JobQueue) -> None:
    """The task sees itself RUNNING, in its context and in the store, at attempt 1."""
    result = tasks.observe.enqueue()
    worker.run_once()
    result.refresh()
    assert result.return_value == {"attempt": 1, "context_status": "RUNNING", "stored_status": "RUNNING"}


def test_timestamps_are_ordered(worker: JobQueue) -> None:
    """enqueued_at <= started_at == last_attempted_at <= finished_at, all aware."""
    result = tasks.add.enqueue(1, 1)
    assert result.enqueued_at is not None and result.started_at is None and result.finished_at is None
    worker.run_once()
    stored = tasks.add.get_result(result.id)
    assert stored.enqueued_at is not None and stored.started_at is not None and stored.finished_at is not None
    assert stored.enqueued_at <= stored.started_at <= stored.finished_at
    assert stored.last_attempted_at == stored.started_at
    assert stored.finished_at.tzinfo is not None


def test_args_and_kwargs_round_trip_as_json(worker: JobQueue) -> None:
    """Arguments are stored as JSON (tuples become lists) and handed to the function."""
    result = tasks.echo.enqueue(1, (2, 3), key={"nested": [True, None]})
    worker.run_once()
    stored = tasks.echo.get_result(result.id)
    assert stored.args == [1, [2, 3]] and stored.kwargs == {"key": {"nested": [True, None]}}
    assert stored.return_value == {"args": [1, [2, 3]], "kwargs": {"key": {"nested": [True, None]}}}


def test_arguments_json_cannot_hold_are_refused(django_db: str) -> None:
    """An argument that is not JSON is refused at enqueue, and nothing is stored."""
    with pytest.raises(TypeError):
        tasks.add.enqueue(object(), 1)


def test_system_exit_in_a_task_fails_it(worker: JobQueue) -> None:
    """SystemExit raised by a task makes it FAILED with the exception's class, and the worker goes on."""
    result = tasks.exits.enqueue()
    worker.run_once()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is SystemExit
    assert "SystemExit" in result.errors[0].traceback
    with pytest.raises(ValueError):
        result.return_value  # noqa: B018
    assert worker.run_once() == 0 and tasks.add.enqueue(1, 2) and worker.run_once() == 1


def test_an_exception_is_recorded_with_its_class_and_traceback(worker: JobQueue) -> None:
    """A task's exception gives FAILED, its class importable from the error, its traceback kept."""
    result = tasks.fails.enqueue("broken")
    worker.run_once()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "broken" in error.traceback


def test_a_project_exception_class_is_found_by_its_path(worker: JobQueue) -> None:
    """The error names the project's own exception class by its import path."""
    result = tasks.declines.enqueue()
    worker.run_once()
    result.refresh()
    [error] = result.errors
    assert error.exception_class_path == "tests.django.tasks.PaymentDeclined"
    assert error.exception_class is tasks.PaymentDeclined


def test_return_value_of_an_unfinished_task_raises(worker: JobQueue) -> None:
    """return_value raises until the task succeeded, as Django's API says."""
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018
    assert not result.is_finished


def test_a_value_json_cannot_hold_fails_naming_its_type(worker: JobQueue) -> None:
    """A non-JSON return value fails the task at once (no retry), the error naming the type."""
    result = tasks.returns_object.enqueue()
    worker.run_once()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert issubclass(error.exception_class, TypeError)
    assert "<class 'object'>" in error.traceback


def test_plain_tasks_get_jobkit_retries(worker: JobQueue) -> None:
    """A plain @task keeps jobkit's default retry policy: 3 retries after the first attempt."""
    assert worker.job_types()["django:tests.django.tasks.add"]["max_retries"] == 3
    assert worker.job_types()["django:tests.django.tasks.fails"]["max_retries"] == 0  # TASK_DEFAULTS


def test_a_failed_attempt_is_retried_and_recorded(worker: JobQueue, tmp_path: Path) -> None:
    """A failure with retries left makes the task READY again; the retry succeeds; errors, worker_ids,
    attempts and signals tell both attempts."""
    result = tasks.flaky.enqueue()
    assert worker.run_once() == 1
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert [e.exception_class for e in result.errors] == [ConnectionError]
    assert worker.run_once() == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2
    assert result.attempts == 2 and result.worker_ids == [worker.worker.id] * 2
    seen = [(e["kind"], e["status"]) for e in events(tmp_path) if e.get("id") == result.id]
    assert seen == [
        ("enqueued", "READY"),
        ("started", "RUNNING"),
        ("finished", "FAILED"),
        ("started", "RUNNING"),
        ("finished", "SUCCESSFUL"),
    ]


def test_unknown_result_id_raises(django_db: str) -> None:
    """An id that names no job (or is no id at all) raises TaskResultDoesNotExist."""
    for result_id in ("987654", "not-an-id", ""):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(result_id)


def test_get_result_of_another_task_is_a_mismatch(worker: JobQueue) -> None:
    """Task.get_result refuses the result of another task."""
    from django.tasks.exceptions import TaskResultMismatch

    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        tasks.echo.get_result(result.id)


def _module_level_only() -> None:
    def inner() -> None: ...

    task(inner)


@pytest.mark.parametrize(
    ("why", "make"),
    [
        ("not module level", _module_level_only),
        ("unknown queue", lambda: tasks.add.using(queue_name="nope")),
        ("priority too high", lambda: tasks.add.using(priority=101)),
        ("priority too low", lambda: tasks.add.using(priority=-101)),
        ("naive run_after", lambda: tasks.add.using(run_after=datetime(2030, 1, 1))),
    ],
)
def test_invalid_tasks_are_refused(django_db: str, why: str, make: Any) -> None:
    """Tasks the backend cannot run are refused when they are defined or changed."""
    with pytest.raises(InvalidTask):
        make()


def test_priorities_run_higher_first(worker: JobQueue, tmp_path: Path) -> None:
    """Django's higher priority runs first, mapped onto jobkit's lower-first without loss."""
    low = tasks.in_emails.using(priority=-100).enqueue("low")
    high = tasks.in_emails.using(priority=100).enqueue("high")
    middle = tasks.in_emails.using(priority=7).enqueue("middle")
    assert [worker.job_info(int(r.id)).priority for r in (low, high, middle)] == [100, -100, -7]  # type: ignore[union-attr]
    while worker.run_once():
        pass
    assert [e["tag"] for e in events(tmp_path) if e["kind"] == "ran"] == ["high", "middle", "low"]
    assert tasks.in_emails.get_result(middle.id).task.priority == 7


def test_queue_name_is_jobkit_queue(worker: JobQueue) -> None:
    """A task's queue_name is its jobkit queue, read back as the task's queue_name."""
    result = tasks.in_emails.enqueue("q")
    assert worker.job_info(int(result.id)).queue == "emails"  # type: ignore[union-attr]
    assert tasks.in_emails.get_result(result.id).task.queue_name == "emails"


def test_run_after_defers_the_task(worker: JobQueue) -> None:
    """A task with run_after in the future waits READY; one in the past runs."""
    later = tasks.add.using(run_after=datetime.now(UTC) + timedelta(hours=1)).enqueue(1, 2)
    assert worker.run_once() == 0
    assert tasks.add.get_result(later.id).status == TaskResultStatus.READY
    tasks.add.using(run_after=datetime.now(UTC) - timedelta(seconds=1)).enqueue(1, 2)
    assert worker.run_once() == 1


def test_async_task_and_async_api(worker: JobQueue) -> None:
    """aenqueue and aget_result work from async code, and an async def task runs."""

    async def enqueue() -> Any:
        return await tasks.async_add.aenqueue(20, 22)

    result = asyncio.run(enqueue())
    assert worker.run_once() == 1

    async def fetch() -> Any:
        return await tasks.async_add.aget_result(result.id)

    stored = asyncio.run(fetch())
    assert stored.status == TaskResultStatus.SUCCESSFUL and stored.return_value == 42


def test_signals_are_sent_in_order(worker: JobQueue, tmp_path: Path) -> None:
    """task_enqueued at enqueue, task_started and task_finished around the run, with their statuses."""
    result = tasks.add.enqueue(1, 2)
    worker.run_once()
    seen = [(e["kind"], e["status"]) for e in events(tmp_path) if e.get("id") == result.id]
    assert seen == [("enqueued", "READY"), ("started", "RUNNING"), ("finished", "SUCCESSFUL")]


def test_worker_ids_name_the_worker(worker: JobQueue) -> None:
    """worker_ids holds the worker of each attempt."""
    result = tasks.add.enqueue(1, 2)
    worker.run_once()
    result.refresh()
    assert result.worker_ids == [worker.worker.id]
    assert result.attempts == 1


def test_task_class_carries_jobkit_options(worker: JobQueue) -> None:
    """On Django >= 6.1 @task(max_retries=5, timeout=30) sets the job's options; 6.0's @task takes none."""
    if django.VERSION >= (6, 1):
        described = worker.job_types()["django:tests.django.tasks.configured"]
        assert (described["max_retries"], described["timeout"], described["backoff"]) == (5, 30.0, "linear")
        with pytest.raises(InvalidTask, match="max_retries"):
            task(max_retries=-1)(tasks.record)
    else:
        with pytest.raises(TypeError):
            task(max_retries=5)(tasks.record)

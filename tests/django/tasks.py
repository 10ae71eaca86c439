"""Tasks of the test project; a worker finds them by autodiscovery (the app's ``tasks`` module).

Signals and runs are recorded to the file named by JOBKIT_TEST_DJANGO_LOG (one JSON line each), so a
test can tell which process sent what.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import django
from django.dispatch import receiver
from django.tasks import TaskContext, task
from django.tasks.signals import task_enqueued, task_finished, task_started


def record(kind: str, **data: Any) -> None:
    """Append one event to the log file, if the test named one."""
    path = os.environ.get("JOBKIT_TEST_DJANGO_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps({"kind": kind, "pid": os.getpid(), **data}) + "\n")


@receiver(task_enqueued)
def _enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    record("enqueued", id=task_result.id, status=str(task_result.status))


@receiver(task_started)
def _started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    record("started", id=task_result.id, status=str(task_result.status))


@receiver(task_finished)
def _finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    record("finished", id=task_result.id, status=str(task_result.status))


@task
def add(a: int, b: int) -> int:
    return a + b


@task(backend="noretry")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task(takes_context=True)
def observe(context: TaskContext) -> dict[str, Any]:
    """Reports what it sees of itself while it runs: its own result, from the context and from the store."""
    mine = context.task_result
    stored = observe.get_result(mine.id)
    return {"attempt": context.attempt, "context_status": str(mine.status), "stored_status": str(stored.status)}


@task(backend="noretry")
def exits() -> None:
    raise SystemExit(3)


class PaymentDeclined(Exception):
    """An exception of the project's own, found again by its import path."""


@task(backend="noretry")
def fails(message: str) -> None:
    raise ValueError(message)


@task(backend="noretry")
def declines() -> None:
    raise PaymentDeclined("card 4242")


@task
def returns_object() -> Any:
    return object()


@task(backend="quick", takes_context=True)
def flaky(context: TaskContext) -> int:
    """Fails its first attempt, succeeds on the next; returns the attempt."""
    if context.attempt == 1:
        raise ConnectionError("first attempt fails")
    return context.attempt


@task(backend="noretry", queue_name="emails")
def in_emails(tag: str) -> str:
    record("ran", tag=tag)
    return tag


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task
def held(control: str) -> int:
    """Writes ``started-<attempt>`` to ``control`` then waits for ``release`` there; returns the attempt."""
    directory = Path(control)
    attempt = len(list(directory.glob("started-*"))) + 1
    (directory / f"started-{attempt}").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not (directory / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return attempt


if django.VERSION >= (6, 1):

    @task(max_retries=5, timeout=30, backoff="linear")
    def configured() -> str:
        return "configured"

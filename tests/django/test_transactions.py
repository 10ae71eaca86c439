"""Enqueue inside Django transactions: on jobkit's database the job joins it; elsewhere it waits for commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections, transaction
from django.tasks import TaskResultStatus, task_backends
from django.tasks.exceptions import TaskResultDoesNotExist

from jobkit import JobQueue
from tests.django import tasks


class Rollback(Exception):
    """Raised to leave an atomic block by rolling it back."""


@pytest.fixture
def queue(django_db: str) -> Iterator[JobQueue]:
    """A queue of its own on the backend's database (its own connections, not Django's)."""
    q = task_backends["default"].worker_queue()
    try:
        yield q
    finally:
        q.close()


def test_enqueue_joins_the_django_transaction(queue: JobQueue) -> None:
    """Inside atomic() on the same database the job is invisible to others until the commit."""
    with transaction.atomic():
        connections["default"].cursor().execute("SELECT 1")
        result = tasks.add.enqueue(1, 2)
        assert result.id
        assert queue.job_info(int(result.id)) is None  # another connection cannot see it yet
    assert queue.job_info(int(result.id)) is not None
    assert queue.run_once() == 1
    assert tasks.add.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_a_rolled_back_transaction_takes_the_job_with_it(queue: JobQueue) -> None:
    """A rollback of the Django transaction leaves no job behind."""
    with pytest.raises(Rollback), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        raise Rollback
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)
    assert queue.run_once() == 0


def test_django_connection_stays_usable_after_enqueue(queue: JobQueue) -> None:
    """Enqueueing on Django's connection leaves its transaction open and the connection working."""
    with transaction.atomic():
        tasks.add.enqueue(1, 2)
        assert connections["default"].in_atomic_block
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 41 + 1")
            assert cursor.fetchone()[0] == 42
        tasks.add.enqueue(3, 4)
    assert queue.drain() == 2


def test_another_database_enqueues_on_commit(queue: JobQueue) -> None:
    """Inside a transaction on another database (ENQUEUE_ON_COMMIT) the job is stored at its commit."""
    with transaction.atomic(using="other"):
        result = tasks.add.enqueue(1, 2)
        assert result.id == ""
        assert queue.run_once() == 0
    assert result.id
    assert queue.run_once() == 1


def test_another_database_rolled_back_enqueues_nothing(queue: JobQueue) -> None:
    """A rollback on the other database drops the pending enqueue."""
    with pytest.raises(Rollback), transaction.atomic(using="other"):
        result = tasks.add.enqueue(1, 2)
        raise Rollback
    assert result.id == ""
    assert queue.run_once() == 0

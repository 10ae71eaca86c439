"""Fixtures shared by the CLI and worker-process tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import jobkit
from jobkit import JobQueue


@pytest.fixture
def producer(db_url: str) -> Iterator[JobQueue]:
    """A queue in the test process that only enqueues and inspects (its worker is not started)."""
    queue = jobkit.configure(database_url=db_url)
    yield queue
    queue.close()
    JobQueue.set_instance(None)

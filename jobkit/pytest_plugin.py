"""pytest fixtures over :mod:`jobkit.testing`: ``jobkit_queue``, ``jobkit_inline_queue``, ``jobkit_clock``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit._clock import FakeClock
from jobkit._queue import JobQueue
from jobkit.testing import isolated_queue


@pytest.fixture
def jobkit_clock() -> FakeClock:
    """A clock that moves only when the test calls ``advance``."""
    return FakeClock()


@pytest.fixture
def jobkit_queue(tmp_path: Path, jobkit_clock: FakeClock) -> Iterator[JobQueue]:
    """A manual-mode queue on its own SQLite file, on the fake clock, installed process-wide."""
    with isolated_queue(tmp_path, mode="manual", clock=jobkit_clock) as queue:
        yield queue


@pytest.fixture
def jobkit_inline_queue(tmp_path: Path) -> Iterator[JobQueue]:
    """An inline-mode queue: each job runs in the caller as soon as it is enqueued."""
    with isolated_queue(tmp_path, mode="inline") as queue:
        yield queue

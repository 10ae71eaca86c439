"""pytest fixtures over :mod:`jobkit.testing`: ``jobkit_queue``, ``jobkit_inline_queue``, ``jobkit_clock``.

While the plugin is loaded, a test that enqueues without one of these fixtures (or its own
``jobkit.configure``) is refused instead of silently writing to the default database
(``./jobkit.sqlite3``, or whatever ``JOBKIT_DATABASE_URL`` names); set the ini option
``jobkit_allow_default_queue = true`` to allow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit._clock import FakeClock
from jobkit._queue import JobQueue
from jobkit.testing import isolated_queue

ALLOW_OPTION = "jobkit_allow_default_queue"

REFUSAL = (
    "a job was enqueued (or the queue used) outside jobkit's test fixtures: it would write to {url}, "
    "a database the jobkit pytest plugin did not create. Use the jobkit_queue or jobkit_inline_queue "
    f"fixture, call jobkit.configure(...) yourself, or set `{ALLOW_OPTION} = true` in your pytest ini options"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ini option that lets tests use the default, implicitly created queue."""
    parser.addini(
        ALLOW_OPTION,
        type="bool",
        default=False,
        help="jobkit: let tests enqueue on the default database without a fixture",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse the implicit process-wide queue unless the ini option allows it."""
    if not config.getini(ALLOW_OPTION):
        JobQueue.refuse_implicit_instance(REFUSAL)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the queue as it was found (pytest may be run in-process, as by pytester)."""
    JobQueue.refuse_implicit_instance(None)


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
    """An inline-mode queue: each job runs in the caller as soon as it is enqueued, retries included."""
    with isolated_queue(tmp_path, mode="inline") as queue:
        yield queue

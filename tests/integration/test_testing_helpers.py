"""jobkit.testing and the pytest plugin, as a user's test suite meets them, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit import JobFailed, JobQueue
from jobkit.testing import assert_enqueued, enqueued_jobs, isolated_queue, refute_enqueued
from tests.jobs import AddOne, Echo, SlowBackoff

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inline(db_url: str, tmp_path: Path) -> Iterator[JobQueue]:
    """An inline-mode queue on the test's database."""
    with isolated_queue(tmp_path, mode="inline", database_url=db_url) as queue:
        yield queue


@pytest.fixture
def manual(db_url: str, tmp_path: Path) -> Iterator[JobQueue]:
    """A manual-mode queue on the test's database."""
    with isolated_queue(tmp_path, mode="manual", database_url=db_url) as queue:
        yield queue


def test_inline_mode_runs_a_flaky_jobs_retries(inline: JobQueue) -> None:
    """A job that fails twice, then succeeds, completes inside perform_later: its retries ran."""
    handle = SlowBackoff.perform_later(times=2)  # retried after 10 s, then 20 s
    info = handle.refresh()
    assert (info.status, info.attempt, info.result) == ("completed", 3, "ok after 3")
    assert [e["message"] for e in info.errors] == ["boom on attempt 1", "boom on attempt 2"]


def test_inline_mode_raises_the_final_error_in_the_caller(inline: JobQueue) -> None:
    """A job that fails every attempt raises JobFailed in the caller, after all of its retries."""
    with pytest.raises(JobFailed) as caught:
        SlowBackoff.perform_later(times=10)
    assert caught.value.error_type == "RuntimeError"
    assert [e["message"] for e in caught.value.errors] == [f"boom on attempt {n}" for n in (1, 2, 3, 4)]
    assert str(caught.value).endswith("failed: RuntimeError: boom on attempt 4")


def test_assert_enqueued_failure_shows_what_was_enqueued(manual: JobQueue) -> None:
    """With the wrong arguments, the failure lists the pending jobs and their arguments."""
    AddOne.perform_later(n=1)
    Echo.set(queue="mailers").perform_later(to="a@b.c")
    with pytest.raises(AssertionError) as caught:
        assert_enqueued(manual, AddOne, args={"n": 2})
    assert str(caught.value) == (
        "expected a pending tests.add_one job with {'n': 2}, found none; enqueued (2):\n"
        '  tests.add_one {"n": 1} (queue default)\n'
        '  tests.echo {"to": "a@b.c"} (queue mailers)'
    )
    with pytest.raises(AssertionError, match=r"expected 2 pending tests.add_one jobs, found 1; enqueued \(2\)"):
        assert_enqueued(manual, AddOne, count=2)


def test_refute_enqueued_and_enqueued_jobs(manual: JobQueue) -> None:
    """refute_enqueued passes when no such job waits and names the ones that do; enqueued_jobs lists them in order."""
    first = AddOne.perform_later(n=1)
    second = Echo.perform_later(x=1)
    refute_enqueued(manual, AddOne, args={"n": 2})
    refute_enqueued(manual, "tests.slow_backoff")
    with pytest.raises(
        AssertionError, match=rf'^expected no pending tests.add_one job, found 1: {first.id} {{"n": 1}}$'
    ):
        refute_enqueued(manual, AddOne)
    assert [j.id for j in enqueued_jobs(manual)] == [first.id, second.id]
    assert [j.args for j in enqueued_jobs(manual, Echo)] == [{"x": 1}]


def run_user_suite(tmp_path: Path, test_source: str, ini: str = "") -> subprocess.CompletedProcess[str]:
    """Run a user's test file with pytest (the plugin loaded as installed) in ``tmp_path``."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(test_source))
    (tmp_path / "pytest.ini").write_text(f"[pytest]\n{ini}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("JOBKIT_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


USER_TEST = """
    from tests.jobs import AddOne

    def test_enqueues_without_the_fixture():
        AddOne.perform_later(n=1)
"""


def test_a_test_without_the_fixture_does_not_create_a_database(tmp_path: Path) -> None:
    """Enqueuing outside the fixtures fails the test with the fix named, and writes no ./jobkit.sqlite3."""
    done = run_user_suite(tmp_path, USER_TEST)
    assert done.returncode == 1, done.stdout
    assert "outside jobkit's test fixtures: it would write to sqlite:///jobkit.sqlite3" in done.stdout
    assert "jobkit_allow_default_queue = true" in done.stdout
    assert not (tmp_path / "jobkit.sqlite3").exists()


def test_the_ini_option_allows_the_default_database(tmp_path: Path) -> None:
    """`jobkit_allow_default_queue = true` is the way to ask for the default database in tests."""
    done = run_user_suite(tmp_path, USER_TEST, ini="jobkit_allow_default_queue = true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "jobkit.sqlite3").exists()

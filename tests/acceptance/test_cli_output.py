"""The CLI prints stored text literally, never as Rich markup, on SQLite and PostgreSQL.

Rows are stored by the real code paths (enqueue, a failing job's progress and error, a worker's
registration) with text that Rich would read as markup; every listing must show it as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit import BaseJob, JobQueue, job

ROOT = Path(__file__).resolve().parents[2]

NAME = "markup.[bold]job[/bold]"
QUEUE = "[/]"
STAGE = "[red]stage"
MESSAGE = "[/var/data]"
ERROR = "[link=https://example.com]boom[/link] [/] [bold"
WORKER = "[bold]worker[/bold]-[/]"
HOST = "[/]host"


@job(name=NAME, queue=QUEUE, max_retries=0)
class MarkupJob(BaseJob[Any]):
    """Reports progress and fails, with markup-like text in both."""

    def perform(self, args: Any) -> None:
        self.progress(50, stage=STAGE, message=MESSAGE)
        raise ValueError(ERROR)


@pytest.fixture
def stored(db_url: str) -> Iterator[tuple[JobQueue, int]]:
    """A failed job and a registered worker, each with markup-like text in every stored field shown."""
    queue = jobkit.configure(database_url=db_url)
    handle = MarkupJob.perform_later()
    assert queue.run_once() == 1
    assert handle.status() == "failed"
    queue.store.register_worker(WORKER, host=HOST, pid=1, queues=[QUEUE], concurrency=1)
    try:
        yield queue, handle.id
    finally:
        queue.close()
        JobQueue.set_instance(None)


def cli(db_url: str, *args: str) -> str:
    """Run ``jobkit ARGS`` on ``db_url`` as a real process (wide enough that no cell wraps); returns stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", "--database-url", db_url, *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_jobs_list_prints_markup_literally(db_url: str, stored: tuple[JobQueue, int]) -> None:
    """`jobs list` shows a job type, queue, stage and progress message that look like markup as they are."""
    out = cli(db_url, "jobs", "list")
    for text in (NAME, QUEUE, STAGE, MESSAGE):
        assert text in out, (text, out)


def test_jobs_list_with_a_filter_on_a_markup_queue(db_url: str, stored: tuple[JobQueue, int]) -> None:
    """Filtering by a queue named like a closing tag finds and prints the job."""
    _, job_id = stored
    out = cli(db_url, "jobs", "list", "--queue", QUEUE)
    assert str(job_id) in out and MESSAGE in out


def test_workers_prints_markup_literally(db_url: str, stored: tuple[JobQueue, int]) -> None:
    """`workers` shows a worker id and host that look like markup as they are."""
    out = cli(db_url, "workers")
    assert WORKER in out and HOST in out, out


def test_stats_prints_markup_literally(db_url: str, stored: tuple[JobQueue, int]) -> None:
    """`stats` shows a queue name, and `stats --by type` a job type name, that look like markup as they are."""
    assert QUEUE in cli(db_url, "stats")
    assert NAME in cli(db_url, "stats", "--by", "type")


def test_show_and_watch_print_the_error_literally(db_url: str, stored: tuple[JobQueue, int]) -> None:
    """`jobs show` and `jobs watch` give the stored error message, progress and names exactly."""
    _, job_id = stored
    shown = json.loads(cli(db_url, "jobs", "show", str(job_id)))
    assert (shown["name"], shown["queue"]) == (NAME, QUEUE)
    assert shown["errors"][-1]["message"] == ERROR
    assert shown["progress"]["message"] == MESSAGE
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", "--database-url", db_url, "jobs", "watch", str(job_id)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr  # watch exits 1 for a job that did not complete
    assert f"failed: ValueError: {ERROR}" in done.stdout


def test_jobs_show_masks_secret_fields_of_known_types(db_url: str) -> None:
    """`jobs --app M show` prints a SecretStr argument masked; the stored value is the real one."""
    from tests.integration.test_input_matrix import PlaceOrder

    queue = jobkit.configure(database_url=db_url)
    try:
        handle = PlaceOrder.perform_later(to="a@b.c", token="s3cret")
        assert handle.refresh().args["token"] == "s3cret"  # stored as given, for perform
    finally:
        queue.close()
        JobQueue.set_instance(None)
    shown = json.loads(cli(db_url, "jobs", "--app", "tests.integration.test_input_matrix", "show", str(handle.id)))
    assert shown["args"]["token"] == "**********" and shown["args"]["to"] == "a@b.c"

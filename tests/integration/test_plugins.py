"""Plugins: handlers get a job context as BaseJob does, and entry-point plugins load wherever a worker runs.

On SQLite and PostgreSQL; the entry points come from a real (tiny) distribution put on the path.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobkit import JobContext, JobQueue
from jobkit._registry import unregister
from tests.jobs import AddOne

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def forget() -> Iterator[list[str]]:
    """Names of handlers registered by the test, unregistered after it (the registry is process-wide)."""
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def test_a_handler_reports_progress_checkpoints_and_logs(
    queue: JobQueue, forget: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A `handler(args, context)` reports progress and a checkpoint, logs with the job's tags, sees its token."""
    seen: dict[str, Any] = {}

    def scrape(args: dict[str, Any], context: JobContext) -> dict[str, Any]:
        context.progress(40, stage="fetch", message=args["url"])
        context.checkpoint("fetched", {"bytes": 512})
        context.logger.info("fetched %s", args["url"])
        seen.update(cancelled=context.cancel_token.cancelled, job_id=context.job_id, attempt=context.attempt)
        return {"ok": True}

    queue.register_handler("tests.plugin.scrape", scrape, max_retries=0)
    forget.append("tests.plugin.scrape")
    handle = queue.enqueue("tests.plugin.scrape", {"url": "https://example.org"})
    with caplog.at_level(logging.INFO, logger="jobkit.job.tests.plugin.scrape"):
        assert queue.run_once() == 1
    info = handle.refresh()
    assert (info.status, info.result) == ("completed", {"ok": True})
    assert info.progress is not None
    assert (info.progress["percent"], info.progress["stage"], info.progress["message"]) == (
        40.0,
        "fetch",
        "https://example.org",
    )
    assert info.checkpoint is not None
    assert (info.checkpoint["stage"], info.checkpoint["data"]) == ("fetched", {"bytes": 512})
    assert seen == {"cancelled": False, "job_id": handle.id, "attempt": 1}
    record = next(r for r in caplog.records if r.name == "jobkit.job.tests.plugin.scrape")
    assert record.getMessage() == f"[job {handle.id} tests.plugin.scrape #1] fetched https://example.org"


class Resumable:
    """A handler object whose ``process`` takes the context: the retry resumes from its checkpoint."""

    def __init__(self) -> None:
        self.starts: list[Any] = []

    def process(self, args: dict[str, Any], context: JobContext) -> str:
        last = context.last_checkpoint
        self.starts.append(None if last is None else (last.stage, last.data))
        if last is None:
            context.checkpoint("half", {"done": 5})
            raise RuntimeError("connection reset")
        return f"resumed at {last.data['done']}"

    def on_error(self, exc: BaseException, args: dict[str, Any]) -> None:
        """Plugins' error hook: still called with (exception, args)."""
        self.starts.append(f"on_error: {exc}")


def test_a_handler_objects_retry_sees_its_last_checkpoint(queue: JobQueue, forget: list[str]) -> None:
    """An object with `process(args, context)`: its second attempt sees the checkpoint the first one saved."""
    handler = Resumable()
    queue.register_handler("tests.plugin.resumable", handler, max_retries=1, backoff=lambda attempt: 0.0)
    forget.append("tests.plugin.resumable")
    handle = queue.enqueue("tests.plugin.resumable", {})
    assert queue.drain() == 2
    assert handle.result(timeout=5) == "resumed at 5"
    assert handler.starts == [None, "on_error: connection reset", ("half", {"done": 5})]


def test_an_async_handler_gets_its_context_too(queue: JobQueue, forget: list[str]) -> None:
    """`async def handler(args, context)` reports progress through its context and returns its result."""

    async def fetch(args: dict[str, Any], context: JobContext) -> int:
        context.progress(75, stage="awaiting")
        return int(args["n"]) + 1

    queue.register_handler("tests.plugin.async_fetch", fetch, max_retries=0)
    forget.append("tests.plugin.async_fetch")
    handle = queue.enqueue("tests.plugin.async_fetch", {"n": 1})
    queue.start()
    try:
        assert handle.result(timeout=10) == 2
    finally:
        queue.stop(grace=5)
    progress = handle.refresh().progress
    assert progress is not None and (progress["percent"], progress["stage"]) == (75.0, "awaiting")


def test_a_one_argument_handler_is_called_as_before(queue: JobQueue, forget: list[str]) -> None:
    """A plain `handler(args)` gets its arguments alone."""
    queue.register_handler("tests.plugin.plain", lambda args: args["n"] * 2, max_retries=0)
    forget.append("tests.plugin.plain")
    handle = queue.enqueue("tests.plugin.plain", {"n": 21})
    queue.run_once()
    assert handle.result(timeout=5) == 42


def test_job_types_show_the_schema_and_the_result_type(queue: JobQueue, forget: list[str]) -> None:
    """`job_types()` describes each type's argument schema (JSON schema) and declared result type."""

    def shout(args: dict[str, Any], context: JobContext) -> str:
        return str(args["text"]).upper()

    queue.register_handler("tests.plugin.shout", shout)
    forget.append("tests.plugin.shout")
    types = queue.job_types()
    assert (types["tests.plugin.shout"]["kind"], types["tests.plugin.shout"]["result"]) == ("handler", "str")
    add_one = types[AddOne.job_type().name]
    assert (add_one["kind"], add_one["schema"], add_one["result"]) == ("job", "NumberArgs", "int")
    assert add_one["args_schema"]["properties"]["n"]["type"] == "integer"
    assert add_one["args_schema"]["required"] == ["n"]


def make_plugin(directory: Path) -> None:
    """A distribution with two `jobkit.plugins` entry points: a job module, and a set-up function."""
    (directory / "demo_plugin_jobs.py").write_text(
        textwrap.dedent(
            """
            from typing import Any

            from jobkit import BaseJob, job

            @job(name="demo_plugin.double", max_retries=0)
            class Double(BaseJob[dict[str, Any]]):
                def perform(self, args: dict[str, Any]) -> int:
                    return int(args["n"]) * 2
            """
        )
    )
    (directory / "demo_plugin_setup.py").write_text(
        textwrap.dedent(
            """
            def shout(args, context):
                context.progress(50, stage="shouting")
                return args["text"].upper()

            def setup(registry):
                registry.register_handler("demo_plugin.shout", shout, max_retries=0)
            """
        )
    )
    info = directory / "jobkit_demo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jobkit-demo-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[jobkit.plugins]\njobs = demo_plugin_jobs\nshout = demo_plugin_setup:setup\n"
    )


IN_PROCESS = """
import sys

import jobkit
from jobkit._registry import lookup

queue = jobkit.configure(database_url=sys.argv[1], poll_interval=0.2)
queue.start()  # an in-process worker, no CLI: the plugins must be loaded by now
loaded = [name for name in ("demo_plugin.double", "demo_plugin.shout") if lookup(name) is not None]
results = [queue.enqueue(name, args).result(timeout=30) for name, args in
           (("demo_plugin.double", {"n": 21}), ("demo_plugin.shout", {"text": "hi"}))]
queue.stop(grace=5)
queue.close()
print(loaded, results)
"""


def test_entry_point_plugins_load_in_an_in_process_worker(db_url: str, tmp_path: Path) -> None:
    """`queue.start()` in a plain script loads both kinds of entry point, and their jobs run."""
    make_plugin(tmp_path)
    (tmp_path / "app.py").write_text(IN_PROCESS)
    done = subprocess.run(
        [sys.executable, "app.py", db_url],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "['demo_plugin.double', 'demo_plugin.shout'] [42, 'HI']"


def test_cli_types_lists_plugin_types_with_their_result(tmp_path: Path) -> None:
    """`jobkit types --json` shows entry-point plugins' types, handlers included, without --app."""
    make_plugin(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", "types", "--json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    types = json.loads(done.stdout)
    assert (types["demo_plugin.double"]["kind"], types["demo_plugin.double"]["result"]) == ("job", "int")
    assert types["demo_plugin.shout"]["kind"] == "handler"

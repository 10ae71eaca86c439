"""The CLI as users of rq, Celery and Sidekiq expect it, run as a real process on SQLite and PostgreSQL:
``--version``, ``--json`` everywhere, tables that never cut a name, usage errors exit 2, unknown
queues reported, ``jobkit enqueue``, and ``stats`` by status and queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit import BaseJob, JobQueue, job
from jobkit._store import display_url
from tests.jobs import AddOne

ROOT = Path(__file__).resolve().parents[2]

LONG_NAME = "invoices.generate_the_monthly_statement_for_every_customer"
LONG_WORKER = "worker-on-a-long-host-name.example.internal-4242-abcdef0123"


@job(name=LONG_NAME, queue="invoicing-and-billing-statements", max_retries=0)
class LongNamedJob(BaseJob[Any]):
    """A job type whose name is wider than its column at 80 columns."""

    def perform(self, args: Any) -> None:
        return None


def run(db_url: str | None, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """``jobkit ARGS`` as a real process at ``columns`` columns (not a terminal, as in a pipe)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)}
    env.pop("JOBKIT_DATABASE_URL", None)
    prefix = [] if db_url is None else ["--database-url", db_url]
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *prefix, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have exited 0."""
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def usage_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """The command exited 2 with ``expected`` in its message and no traceback."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def test_version_prints_the_package_version() -> None:
    """`jobkit --version` prints the installed version and exits 0."""
    assert ok(run(None, "--version")).strip() == f"jobkit {jobkit.__version__}"


def test_every_listing_and_show_prints_json(db_url: str, producer: JobQueue) -> None:
    """`jobs list`, `jobs show`, `workers`, `queues list`, `stats` and `types` all take --json."""
    handle = AddOne.set(queue="mailers").perform_later(n=1)
    producer.store.register_worker("w-json", host="h", pid=7, queues=["mailers"], concurrency=2)
    listed = json.loads(ok(run(db_url, "jobs", "list", "--json")))
    assert [(j["id"], j["name"], j["queue"], j["status"], j["args"]) for j in listed] == [
        (handle.id, "tests.add_one", "mailers", "pending", {"n": 1})
    ]
    assert json.loads(ok(run(db_url, "jobs", "show", str(handle.id), "--json")))["id"] == handle.id
    workers = json.loads(ok(run(db_url, "workers", "--json")))
    assert [(w["id"], w["pid"], w["queues"], w["concurrency"]) for w in workers] == [("w-json", 7, ["mailers"], 2)]
    queues = {q["name"]: q for q in json.loads(ok(run(db_url, "queues", "list", "--json")))}
    assert queues["mailers"]["paused"] is False
    assert queues["mailers"]["counts"]["pending"] == 1
    assert json.loads(ok(run(db_url, "stats", "--json")))["by_queue"] == {"mailers": {"pending": 1}}
    types = json.loads(ok(run(None, "types", "--app", "tests.jobs", "--json")))
    assert types["tests.add_one"]["result"] == "int"


def test_tables_never_cut_names_at_80_columns(db_url: str, producer: JobQueue) -> None:
    """At 80 columns a long job type, queue and worker id are printed whole; --wide keeps each row on one line."""
    LongNamedJob.perform_later()
    producer.store.register_worker(LONG_WORKER, host="h", pid=1, queues=None, concurrency=1)
    listing = ok(run(db_url, "jobs", "list"))
    assert LONG_NAME in listing
    assert "invoicing-and-billing-statements" in listing
    assert "…" not in listing
    assert LONG_WORKER in ok(run(db_url, "workers"))
    wide = ok(run(db_url, "jobs", "list", "--wide")).splitlines()
    assert next(line for line in wide if LONG_NAME in line).count("│") == 8  # the whole row on one line


def test_stats_counts_status_by_queue(db_url: str, producer: JobQueue) -> None:
    """`jobkit stats` has a row per queue and a column per status (the docs' status x queue), and a total."""
    AddOne.set(queue="mailers").perform_later(n=1)
    AddOne.perform_later(n=2).pause()
    out = ok(run(db_url, "stats"))
    header = next(line for line in out.splitlines() if "pending" in line)
    assert header.split()[1:5] == ["queue", "┃", "pending", "┃"]
    rows = {line.split()[1]: line.split()[3::2] for line in out.splitlines() if line.startswith("│")}
    # columns: pending, running, completed, failed, cancelled, paused
    assert rows["mailers"] == ["1", "0", "0", "0", "0", "0"]
    assert rows["default"] == ["0", "0", "0", "0", "0", "1"]
    assert rows["total"] == ["1", "0", "0", "0", "0", "1"]
    by_type = ok(run(db_url, "stats", "--by", "type"))
    assert "tests.add_one" in by_type


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--status", "bogus"), "'bogus' is not one of 'pending'"),
        (("--limit", "0"), "0 is not in the range 1<=x<=10000"),
        (("--queue", ""), "queue must be a non-empty string"),
        (("--name", "x" * 201), "job type must be at most 200 characters"),
    ],
)
def test_invalid_list_filters_exit_2(db_url: str, args: tuple[str, ...], message: str) -> None:
    """A filter value that can never match is a usage error (exit 2), not an empty table."""
    usage_error(run(db_url, "jobs", "list", *args), message)


@pytest.mark.parametrize(
    "command",
    [("jobs", "clear", "failed", "--queue", ""), ("jobs", "retry-failed", "--name", ""), ("jobs", "clear", "done")],
)
def test_invalid_bulk_filters_exit_2(db_url: str, command: tuple[str, ...]) -> None:
    """`jobs clear` and `retry-failed` refuse a filter that can never match, as `jobs list` does."""
    usage_error(run(db_url, *command), "Invalid value")


BROKEN_VALIDATOR = """
from pydantic import BaseModel, field_validator

from jobkit import BaseJob, job


class Args(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def explode(cls, value: int) -> int:
        raise RuntimeError("the validator itself is broken")


@job(name="habits.broken_validator", schema=Args)
class Broken(BaseJob[Args]):
    def perform(self, args: Args) -> None:
        return None
"""


def test_an_unexpected_failure_is_one_line_and_its_traceback_needs_v(db_url: str, tmp_path: Path) -> None:
    """An exception no command expects (here a schema validator's bug) is one `jobkit:` line, exit 1; -v shows it all."""
    (tmp_path / "broken_validator_app.py").write_text(BROKEN_VALIDATOR)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "JOBKIT_DATABASE_URL": db_url}
    command = [sys.executable, "-m", "jobkit", "enqueue", "habits.broken_validator", "--app", "broken_validator_app"]
    args = ["--args", '{"n": 1}']
    quiet = subprocess.run([*command, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 1, quiet.stderr
    assert quiet.stderr.strip() == (
        "jobkit: RuntimeError: the validator itself is broken (jobkit -v shows the traceback)"
    )
    loud = subprocess.run(
        [sys.executable, "-m", "jobkit", "-v", *command[3:], *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loud.returncode == 1
    assert "Traceback (most recent call last)" in loud.stderr
    assert "the validator itself is broken" in loud.stderr


def test_pausing_an_unknown_queue_is_refused(db_url: str, producer: JobQueue) -> None:
    """`queues pause` of a name no job or worker knows exits 1 naming the known queues; --force pauses it."""
    AddOne.set(queue="mailers").perform_later(n=1)
    refused = run(db_url, "queues", "pause", "mailerz")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.strip() == (
        "jobkit: unknown queue 'mailerz' (known queues: mailers); pass --force to pause it anyway"
    )
    assert producer.paused_queues() == []
    assert ok(run(db_url, "queues", "pause", "mailers")).strip() == "queue mailers paused"
    assert ok(run(db_url, "queues", "pause", "later", "--force")).strip() == "queue later paused"
    assert producer.paused_queues() == ["later", "mailers"]


def test_enqueue_from_the_shell_stores_a_validated_job(db_url: str, producer: JobQueue) -> None:
    """`jobkit enqueue NAME --args JSON` with --queue, --priority and --run-at stores the job it describes."""
    done = json.loads(
        ok(
            run(
                db_url,
                "enqueue",
                "tests.add_one",
                "--app",
                "tests.jobs",
                "--args",
                '{"n": 41}',
                "--queue",
                "shell",
                "--priority",
                "-3",
                "--run-at",
                "2031-01-02T03:04:05+00:00",
                "--json",
            )
        )
    )
    info = producer.job_info(done["id"])
    assert info is not None
    assert (info.name, info.args, info.queue, info.priority) == ("tests.add_one", {"n": 41}, "shell", -3)
    assert info.run_at.isoformat() == "2031-01-02T03:04:05+00:00"
    plain = ok(run(db_url, "enqueue", "tests.add_one", "--app", "tests.jobs", "--args", '{"n": 1}'))
    assert plain.startswith("enqueued job ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tests.add_one", "--app", "tests.jobs", "--args", '{"n": "x"}'), "n"),
        (("tests.add_one", "--app", "tests.jobs", "--args", '{"n": 1, "m": 2}'), "m"),
        (("tests.add_one", "--app", "tests.jobs", "--args", "{n: 1}"), "not JSON"),
        (("tests.add_one", "--app", "tests.jobs", "--args", "[1]"), "must be a JSON object"),
        (("tests.add_one", "--app", "tests.jobs", "--run-at", "2031-01-02T03:04:05"), "has no timezone"),
        (("tests.add_one", "--app", "tests.jobs", "--args", '{"n": 1}', "--queue", ""), "queue must be a non-empty"),
        (("tests.add_one", "--args", '{"n": 1}'), "no job type named 'tests.add_one' is registered: pass --app"),
    ],
)
def test_enqueue_refuses_what_perform_later_refuses(
    db_url: str, producer: JobQueue, args: tuple[str, ...], message: str
) -> None:
    """Invalid arguments, JSON, run times, queues or an unknown type: exit 2, one message, nothing stored."""
    done = run(db_url, "enqueue", *args)
    usage_error(done, message)
    assert message in done.stderr.strip().splitlines()[-1], done.stderr  # one message, at the end
    assert producer.jobs() == []


def worker_banner(cwd: Path, **env: str) -> str:
    """Start `jobkit worker` in ``cwd``, return its first line (the banner), then stop it with SIGTERM."""
    base = {key: value for key, value in os.environ.items() if key != "JOBKIT_DATABASE_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.jobs"],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0, line
    return line


def test_worker_banner_names_its_database(db_url: str, tmp_path: Path) -> None:
    """The worker's first line names the database it works on, its password hidden."""
    banner = worker_banner(tmp_path, JOBKIT_DATABASE_URL=db_url)
    assert banner.startswith("jobkit worker "), banner
    assert f"database {display_url(db_url)}" in banner, banner


def test_worker_banner_resolves_the_default_sqlite_file(tmp_path: Path) -> None:
    """With the default URL the banner says which file that is: ./jobkit.sqlite3 of the working directory."""
    banner = worker_banner(tmp_path)
    assert f"database sqlite:///jobkit.sqlite3 (the file {tmp_path.resolve() / 'jobkit.sqlite3'})" in banner, banner

"""Start-up failures and signals during start-up, with real worker processes, on SQLite and PostgreSQL.

A worker that cannot use its database says so in one line on stderr and exits: 2 when jobkit's
tables are missing, 3 when the database cannot be reached, within seconds and without retrying.
SIGTERM and SIGINT stop it at every moment of its start-up with exit status 0.
"""

from __future__ import annotations

import os
import queue as queue_module
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobkit import JobQueue
from tests.conftest import PG_ADMIN, require_pg

ROOT = Path(__file__).resolve().parents[2]

#: Seconds a failing start-up may take at most: an interpreter start and one short connection.
FAIL_FAST = 10.0
#: Seconds from a signal to the exit of a worker that is still starting up.
PROMPT = 6.0

NO_TABLES = "has no jobkit tables: run `jobkit db upgrade`"
ADVISORY_MIGRATION_LOCK = 7305092183  # the key Store.migrate takes on PostgreSQL


def env_for(db_url: str, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess on ``db_url`` with a compressed timing profile."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBKIT_DATABASE_URL": db_url,
        "JOBKIT_POLL_INTERVAL": "0.2",
        "JOBKIT_HEARTBEAT_INTERVAL": "0.5",
        "JOBKIT_RESCUE_AFTER": "3",
        **extra,
    }


def run_jobkit(db_url: str, *args: str, timeout: float = FAIL_FAST, **extra: str) -> tuple[int, str, str, float]:
    """Run ``jobkit ARGS`` to its end; returns (exit status, stdout, stderr, seconds taken).

    A process still running after ``timeout`` (the old retry loop) fails the test.
    """
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", *args],
        env=env_for(db_url, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def one_line(stderr: str) -> str:
    """The single line a failed start-up writes on stderr (asserts there is exactly one)."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


class Worker:
    """A `jobkit worker` process whose output lines are collected as they come."""

    def __init__(self, db_url: str, *args: str, app: str = "tests.jobs", **extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobkit", "worker", "--app", app, *args],
            env=env_for(db_url, **extra),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue_module.Queue[str] = queue_module.Queue()
        self.output: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, prefix: str, timeout: float = 30.0) -> None:
        """Block until an output line starts with ``prefix``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line starting {prefix!r}; output so far:\n{''.join(self.output)}"
            try:
                if self.lines.get(timeout=remaining).startswith(prefix):
                    return
            except queue_module.Empty:
                continue

    def signal_and_wait(self, signum: int) -> tuple[int, float]:
        """Send ``signum``; returns (exit status, seconds until the exit). Kills it after PROMPT * 3."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout=PROMPT * 3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the worker ignored {signal.Signals(signum).name}; output:\n{''.join(self.output)}")
        for reader in self._readers:
            reader.join(timeout=5)
        return status, time.monotonic() - sent

    def kill(self) -> None:
        """SIGKILL if still running (test clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Start worker processes; every one left running is killed at the end."""
    started: list[Worker] = []

    def start(db_url: str, *args: str, **kwargs: str) -> Worker:
        worker = Worker(db_url, *args, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def migrate(db_url: str) -> None:
    """Create jobkit's tables on ``db_url``."""
    JobQueue(database_url=db_url).close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` (a black-box observation of another process) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sqlite_path(db_url: str) -> Path:
    """The file of a ``sqlite:///`` URL."""
    return Path(db_url.removeprefix("sqlite:///"))


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux /proc): it is connected to that SQLite file."""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def tagged(db_url: str) -> tuple[str, str]:
    """``db_url`` with an application_name of its own, so this test finds its worker's backends among others."""
    name = f"jobkit_test_{uuid.uuid4().hex[:12]}"
    return f"{db_url}&application_name={name}", name


def pg_backend_waits(application_name: str, query_prefix: str) -> Callable[[], bool]:
    """A predicate: a backend of ``application_name`` waits on a lock in a query starting ``query_prefix``."""

    def check() -> bool:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock' "
                "AND query LIKE %s",
                (application_name, query_prefix + "%"),
            ).fetchone()
        return bool(row and row[0])

    return check


# -- missing tables: exit 2 -------------------------------------------------------------------------------


def test_unmigrated_database_exits_2_with_one_line(db_url: str) -> None:
    """With auto-migrate off, a database without jobkit's tables is one line on stderr and exit 2, at once."""
    if db_url.startswith("sqlite"):
        # An existing database file that simply has no jobkit tables.
        with sqlite3.connect(sqlite_path(db_url)) as conn:
            conn.execute("CREATE TABLE unrelated (id INTEGER)")
    status, _, stderr, took = run_jobkit(db_url, "worker", "--app", "tests.jobs", JOBKIT_AUTO_MIGRATE="false")
    line = one_line(stderr)
    assert status == 2, stderr
    assert line.startswith("jobkit: the database at ") and line.endswith(NO_TABLES), line
    assert took < FAIL_FAST


def test_missing_sqlite_file_exits_2(tmp_path: Path) -> None:
    """With auto-migrate off, a SQLite file that does not exist is missing tables too; nothing is created."""
    path = tmp_path / "absent.sqlite3"
    status, _, stderr, _ = run_jobkit(f"sqlite:///{path}", "worker", "--app", "tests.jobs", JOBKIT_AUTO_MIGRATE="false")
    assert status == 2, stderr
    assert "has no jobkit tables" in one_line(stderr)
    assert not path.exists()


def test_dropped_tables_exit_2(db_url: str) -> None:
    """Tables dropped after a migration are found missing by the next worker (auto-migrate off)."""
    migrate(db_url)
    if db_url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(db_url)) as conn:
            conn.execute("DROP TABLE jobkit_jobs")
    else:
        schema = db_url.rsplit("%3D", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP TABLE "{schema}".jobkit_jobs')
    status, _, stderr, _ = run_jobkit(db_url, "worker", "--app", "tests.jobs", JOBKIT_AUTO_MIGRATE="false")
    assert status == 2, stderr
    assert one_line(stderr).endswith(NO_TABLES)


def test_older_schema_exits_2_naming_the_migrations(db_url: str) -> None:
    """A schema recorded at an older migration than this jobkit's is refused with both revisions named."""
    migrate(db_url)
    queue = JobQueue(database_url=db_url, auto_migrate=False)
    try:
        with queue.store.write() as conn:
            conn.exec_driver_sql("UPDATE jobkit_alembic_version SET version_num = '0001'")
    finally:
        queue.close()
    status, _, stderr, _ = run_jobkit(db_url, "worker", "--app", "tests.jobs", JOBKIT_AUTO_MIGRATE="false")
    assert status == 2, stderr
    line = one_line(stderr)
    assert "at migration 0001, this jobkit needs" in line and line.endswith("run `jobkit db upgrade`"), line


def test_admin_commands_report_missing_tables_the_same_way(db_url: str) -> None:
    """`jobkit jobs list` with auto-migrate off on an unmigrated database: the same line, exit 2."""
    status, _, stderr, _ = run_jobkit(db_url, "jobs", "list", JOBKIT_AUTO_MIGRATE="false")
    assert status == 2, stderr
    line = one_line(stderr)
    assert "has no jobkit tables" in line and line.endswith("run `jobkit db upgrade`"), line


def test_a_migrated_database_passes_with_auto_migrate_off(db_url: str, workers: Callable[..., Worker]) -> None:
    """The check refuses nothing it should accept: after `db upgrade` the worker runs (auto-migrate off)."""
    status, _, stderr, _ = run_jobkit(db_url, "db", "upgrade", timeout=60)
    assert status == 0, stderr
    worker = workers(db_url, JOBKIT_AUTO_MIGRATE="false")
    worker.wait_for_line("jobkit worker ")
    status, _ = worker.signal_and_wait(signal.SIGTERM)
    assert status == 0, "".join(worker.output)


# -- unreachable database: exit 3 -----------------------------------------------------------------------

REFUSED = "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/test"


@pytest.mark.parametrize("command", [("worker", "--app", "tests.jobs"), ("db", "upgrade"), ("jobs", "list")])
def test_refused_port_exits_3_fast_without_the_password(command: tuple[str, ...]) -> None:
    """A PostgreSQL port that refuses connections: one line naming the URL without its password, exit 3."""
    status, stdout, stderr, took = run_jobkit(REFUSED, *command)
    line = one_line(stderr)
    assert status == 3, stderr
    assert line.startswith("jobkit: cannot reach the database at postgresql+psycopg://postgres:***@127.0.0.1:1/test")
    assert line.endswith("(the port is closed: is PostgreSQL running, and listening on that host and port?)")
    assert "s3cret-pw" not in stdout + stderr
    assert took < FAIL_FAST


def test_missing_postgres_database_exits_3() -> None:
    """A PostgreSQL database that does not exist is unreachable: exit 3 with the server's reason."""
    require_pg()
    url = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0] + "/jobkit_no_such_db"
    status, _, stderr, took = run_jobkit(url, "worker", "--app", "tests.jobs")
    assert status == 3, stderr
    line = one_line(stderr)
    assert 'database "jobkit_no_such_db" does not exist' in line
    assert line.endswith("(create it (createdb) or fix the database name in the URL)")
    assert took < FAIL_FAST


@pytest.mark.parametrize("auto_migrate", ["true", "false"])
def test_missing_sqlite_directory_exits_3(tmp_path: Path, auto_migrate: str) -> None:
    """A SQLite file in a directory that does not exist: exit 3 naming the directory, whatever auto-migrate says."""
    missing = tmp_path / "no" / "such" / "dir"
    status, _, stderr, took = run_jobkit(
        f"sqlite:///{missing / 'jobs.sqlite3'}", "worker", "--app", "tests.jobs", JOBKIT_AUTO_MIGRATE=auto_migrate
    )
    assert status == 3, stderr
    assert f"the directory {missing} does not exist" in one_line(stderr)
    assert took < FAIL_FAST


def test_a_file_that_is_not_a_database_exits_3(tmp_path: Path) -> None:
    """A database URL pointing at a file that is not SQLite: one line and exit 3, the file untouched."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    status, _, stderr, _ = run_jobkit(f"sqlite:///{path}", "worker", "--app", "tests.jobs")
    assert status == 3, stderr
    assert "file is not a database" in one_line(stderr)
    assert path.read_text() == "not a database\n" * 100


# -- signals during start-up --------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_importing_the_app_exits_0_promptly(
    db_url: str, workers: Callable[..., Worker], signum: int
) -> None:
    """SIGTERM or SIGINT while the --app module is still importing ends the worker at once, exit 0."""
    worker = workers(db_url, app="tests.slow_app")
    worker.wait_for_line("slow_app: importing")
    status, took = worker.signal_and_wait(signum)
    output = "".join(worker.output)
    assert status == 0, output
    assert took < PROMPT
    assert "Traceback" not in output
    assert f"stopped by {signal.Signals(signum).name} during start-up" in output


def stop_while_held(worker: Worker, holder: Any) -> str:
    """SIGTERM the worker while ``holder`` keeps it waiting; it must exit 0 promptly. Returns its output."""
    try:
        status, took = worker.signal_and_wait(signal.SIGTERM)
    finally:
        holder.rollback()
        holder.close()
    output = "".join(worker.output)
    assert status == 0, output
    assert took < PROMPT, output
    return output


def test_sigterm_while_migrating_exits_0_promptly(db_url: str, workers: Callable[..., Worker]) -> None:
    """SIGTERM while the migration waits for another process's lock ends the worker at once, exit 0."""
    if db_url.startswith("sqlite"):
        # Another process holds SQLite's write lock: the migration's BEGIN IMMEDIATE waits on it.
        holder = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN IMMEDIATE")
        worker = workers(db_url)
        wait_until(lambda: has_open(worker.process.pid, sqlite_path(db_url)), "the worker to open the database")
    else:
        # Another process migrating: the worker waits for the migration's advisory lock.
        holder = psycopg.connect(PG_ADMIN)  # type: ignore[assignment]
        holder.execute(f"SELECT pg_advisory_xact_lock({ADVISORY_MIGRATION_LOCK})")
        url, name = tagged(db_url)
        worker = workers(url)
        wait_until(pg_backend_waits(name, "SELECT pg_advisory_xact_lock"), "the worker to wait for the migration lock")
    output = stop_while_held(worker, holder)
    assert "stopped by SIGTERM during start-up" in output


def test_sigterm_while_registering_exits_0_promptly(db_url: str, workers: Callable[..., Worker]) -> None:
    """SIGTERM while the worker's registration waits on a locked workers table ends it promptly, exit 0."""
    migrate(db_url)
    if db_url.startswith("sqlite"):
        holder = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        worker = workers(db_url)
        # The banner is printed right before the worker registers.
        worker.wait_for_line("jobkit worker ")
    else:
        schema = db_url.rsplit("%3D", 1)[1]
        holder = psycopg.connect(PG_ADMIN)  # type: ignore[assignment]
        holder.execute(f'LOCK TABLE "{schema}".jobkit_workers IN ACCESS EXCLUSIVE MODE')
        url, name = tagged(db_url)
        worker = workers(url)
        wait_until(pg_backend_waits(name, "INSERT INTO jobkit_workers"), "the worker's registration to wait")
    stop_while_held(worker, holder)


# -- usage errors at start-up: exit 2, one line, the traceback only with -v ----------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("worker", "--app", "no_such_module"),
        ("types", "--app", "no_such_module"),
        ("jobs", "--app", "no_such_module", "list"),
    ],
)
def test_unimportable_app_is_one_line_naming_the_fix(tmp_path: Path, command: tuple[str, ...]) -> None:
    """`--app` naming a module that is not on the path: one line naming it and PYTHONPATH, exit 2."""
    status, _, stderr, _ = run_jobkit(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", *command)
    assert status == 2, stderr
    line = one_line(stderr)
    assert line.startswith("jobkit: cannot import --app no_such_module: no module named 'no_such_module'")
    assert "PYTHONPATH" in line


def test_app_that_fails_to_import_names_the_error_and_where(tmp_path: Path) -> None:
    """An app module that raises while imported: one line with the exception and file:line; -v adds the traceback."""
    (tmp_path / "broken_app.py").write_text("import os\n\nraise RuntimeError('settings.SECRET is not set')\n")
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    status, _, stderr, _ = run_jobkit(url, "worker", "--app", "broken_app", PYTHONPATH=f"{ROOT}:{tmp_path}")
    assert status == 2, stderr
    line = one_line(stderr)
    assert "cannot import --app broken_app: RuntimeError: settings.SECRET is not set" in line
    assert f"{tmp_path / 'broken_app.py'}:3" in line
    status, _, stderr, _ = run_jobkit(url, "-v", "worker", "--app", "broken_app", PYTHONPATH=f"{ROOT}:{tmp_path}")
    assert status == 2
    assert "Traceback" in stderr


@pytest.mark.parametrize("command", [("worker", "--app", "tests.jobs"), ("jobs", "list"), ("db", "upgrade")])
def test_a_url_that_is_no_database_url_is_one_line_exit_2(command: tuple[str, ...]) -> None:
    """A URL of another scheme: one line naming both accepted forms, the password masked, exit 2."""
    status, stdout, stderr, _ = run_jobkit("mysql://app:hunter2@db/app", *command)
    assert status == 2, stderr
    line = one_line(stderr)
    assert "'mysql://app:***@db/app' is not a jobkit database URL: use sqlite:///PATH" in line
    assert "postgresql+psycopg://USER@HOST/DATABASE" in line
    assert "hunter2" not in stdout + stderr

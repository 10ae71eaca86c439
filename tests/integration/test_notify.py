"""The notifier: one LISTEN connection per queue on PostgreSQL, doorbells across processes on SQLite, owned threads."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import tests.jobs  # noqa: F401  (registers the job types)
from jobkit import JobQueue
from jobkit._store import Store, open_notifier
from jobkit._store.doorbell import Doorbell, bell_directory
from tests.conftest import FAST, PG_ADMIN, drop_pg_schema, make_pg_url, require_pg

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tagged_pg_url() -> Iterator[tuple[str, str]]:
    """A PostgreSQL URL on a schema of its own, with an application_name that finds this test's backends."""
    require_pg()
    url, schema = make_pg_url()
    name = f"jobkit_notify_{schema}"
    try:
        yield f"{url}&application_name={name}", name
    finally:
        drop_pg_schema(schema)


def listen_backends(application_name: str) -> list[str]:
    """The last statement of every backend of ``application_name`` that issued LISTEN."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN%%'",
            (application_name,),
        ).fetchall()
    return [row[0] for row in rows]


def sqlite_file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def notifier_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "jobkit-notifier"]


def test_one_listen_connection_serves_the_worker_and_waiting_handles(tagged_pg_url: tuple[str, str]) -> None:
    """A queue whose worker was woken by NOTIFY and whose handles wait holds exactly one LISTEN backend, on both channels."""
    url, name = tagged_pg_url
    settings = {**FAST, "poll_interval": 3600.0}
    queue = JobQueue(database_url=url, concurrency=2, **settings)
    producer = JobQueue(database_url=url, **settings)  # enqueues only: no worker, no watch, no LISTEN
    try:
        queue.start()
        first = producer.enqueue("tests.add_one", {"n": 1})
        assert queue.handle(first.id).result(timeout=20) == 2
        # The worker is idle now and polls once an hour: only the NOTIFY of this enqueue can start the job.
        second = producer.enqueue("tests.add_one", {"n": 2})
        assert queue.handle(second.id).result(timeout=20) == 3
        with queue.watch(second.id) as watch:
            assert watch.live
            backends = listen_backends(name)
        assert len(backends) == 1, backends
        assert queue.store.channel in backends[0] and queue.store.events_channel in backends[0], backends
    finally:
        producer.close()
        queue.close()


def test_an_enqueue_wakes_an_idle_sqlite_worker_in_another_process(tmp_path: Path) -> None:
    """A job enqueued here starts in an idle worker process that polls once an hour: its doorbell was rung."""
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    queue = JobQueue(database_url=url, **FAST)
    first = queue.enqueue("tests.add_one", {"n": 1})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.doorbell_worker", url],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdin is not None
        ready, _, _ = select.select([worker.stdout], [], [], 60)
        assert ready and worker.stdout.readline().strip() == "listening"
        assert first.result(timeout=30) == 2  # taken by the worker's first claim, as it started
        # Idle now: neither its fallback poll nor its data_version poll comes within the hour.
        second = queue.enqueue("tests.add_one", {"n": 2})
        assert second.result(timeout=30) == 3
        worker.stdin.close()
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        queue.close()


def test_a_stale_doorbell_of_a_dead_process_does_not_break_enqueue(tmp_path: Path) -> None:
    """A socket left by a killed process is removed by the next enqueue, and live doorbells are still rung."""
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    directory = bell_directory(sqlite_file(url))
    assert directory is not None
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pathlib import Path; from jobkit._store.doorbell import Doorbell\n"
            "print(Doorbell(Path(sys.argv[1])).path, flush=True); os.kill(os.getpid(), 9)",
            str(directory),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dead.returncode == -signal.SIGKILL
    stale = Path(dead.stdout.strip())
    live = Doorbell(directory)
    queue = JobQueue(database_url=url, **FAST)
    try:
        assert stale.exists()
        handle = queue.enqueue("tests.echo", {"word": "still enqueued"})
        assert queue.drain() == 1
        assert handle.result(timeout=5) == {"word": "still enqueued"}
        assert not stale.exists()
        assert live.drain() == [""]
    finally:
        live.close()
        queue.close()


@pytest.mark.parametrize("kind", ["wake-ups", "watches"])
def test_stopping_a_notifier_leaves_no_thread_connection_or_socket(store: Store, kind: str) -> None:
    """start() then stop() ends the notifier's thread and releases its LISTEN connection or doorbell."""
    before = notifier_threads()
    notifier = open_notifier(store)
    notifier.start()
    unsubscribe = notifier.on_wake(lambda payload: None) if kind == "wake-ups" else None
    watch = notifier.watch(1) if kind == "watches" else None
    if kind == "wake-ups" or store.is_postgres:
        assert notifier.listening.wait(20)
    directory = None if store.is_postgres else bell_directory(store.engine.url.database or "")
    own = [] if directory is None else list(directory.glob(f"{os.getpid()}-*.sock"))
    assert len(own) == (1 if kind == "wake-ups" and not store.is_postgres else 0)
    if watch is not None:
        watch.close()
    if unsubscribe is not None:
        unsubscribe()
    notifier.stop()
    assert not notifier.running
    assert notifier_threads() == before
    assert not notifier.listening.is_set() and not notifier.connected.is_set()
    assert not any(p.exists() for p in own)


def test_closing_a_queue_stops_its_notifier(db_url: str) -> None:
    """A queue that ran a worker and waited on a handle leaves no notifier thread once closed."""
    before = notifier_threads()
    queue = JobQueue(database_url=db_url, concurrency=2, **FAST)
    queue.start()
    assert queue.enqueue("tests.add_one", {"n": 1}).result(timeout=20) == 2
    assert len(notifier_threads()) == len(before) + 1
    queue.close()
    assert notifier_threads() == before

"""Database faults during a drain: killed connections and a server restart on PostgreSQL, a long-held lock on SQLite."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest

from jobkit import JobQueue
from tests.chaos.cluster import HEARTBEAT, RESCUE_AFTER, Cluster, wait_until
from tests.chaos.jobs import Work
from tests.chaos.ledger import Verdict, check
from tests.conftest import PG_ADMIN

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

JOBS = 1500


def unfinished(queue: JobQueue) -> int:
    """Jobs still pending or running."""
    by_status = queue.stats()["by_status"]
    return int(by_status.get("pending", 0) + by_status.get("running", 0))


def completed(queue: JobQueue) -> int:
    """Jobs completed so far."""
    return int(queue.stats()["by_status"].get("completed", 0))


def start_drain(
    queue: JobQueue, cluster: Cluster, workers: int = 3, seconds: tuple[float, float] = (0.005, 0.03)
) -> list[int]:
    """Enqueue JOBS quick jobs (each sleeping within ``seconds``) and start the workers; returns the job ids."""
    rng = random.Random()
    handles = Work.perform_all_later([{"seconds": rng.uniform(*seconds), "progress": True} for _ in range(JOBS)])
    for worker in [cluster.start(wait=False) for _ in range(workers)]:
        cluster.wait_registered(worker)
    return [h.id for h in handles]


def finish_drain(queue: JobQueue, cluster: Cluster, ids: list[int]) -> Verdict:
    """Wait for the drain, check every worker is still alive and exits 0, then run the checker."""
    wait_until(lambda: unfinished(queue) == 0, 90, "the drain to finish")
    dead = [w.pid for w in cluster.workers if not w.alive()]
    assert not dead, f"workers {dead} exited during the faults:\n{cluster.logs()[-5000:]}"
    cluster.stop_all()
    logs = cluster.logs()
    assert "Traceback" not in logs, logs[-5000:]
    # Repeats are allowed: an outage longer than the lease may legitimately fence and rescue jobs.
    return check(
        cluster.ledger,
        queue.jobs(limit=JOBS * 2),
        expected=dict.fromkeys(ids, "completed"),
        crashed=cluster.rescue_clock(),
        rescue_after=RESCUE_AFTER,
        heartbeat=HEARTBEAT,
        repeats="any",
    )


def longest_stall(queue: JobQueue, after: float) -> float:
    """The longest time after ``after`` during which no job completed."""
    ends = sorted(info.finished_at.timestamp() for info in queue.jobs(limit=JOBS * 2) if info.finished_at is not None)
    ends = [after] + [t for t in ends if t >= after]
    return max((b - a for a, b in itertools.pairwise(ends)), default=0.0)


def terminate_backends(application_name: str) -> int:
    """pg_terminate_backend on every connection with this application name; returns how many."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return len(rows)


def application_name(url: str) -> str:
    """The application_name query parameter of a database URL."""
    return parse_qs(urlparse(url).query)["application_name"][0]


FAULT_EVERY = 0.75


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_drain_survives_killed_connections(queue: JobQueue, cluster: Cluster) -> None:
    """pg_terminate_backend on every worker connection every 0.75 s: nothing lost or stuck, no worker exits."""
    ids = start_drain(queue, cluster)
    name = application_name(cluster.database_url)
    killed, rounds = 0, 0
    while unfinished(queue) > JOBS // 20 and rounds < 20:
        # Often enough that even a fast drain takes several rounds of faults.
        time.sleep(FAULT_EVERY)
        killed += terminate_backends(name)
        rounds += 1
    last_fault = time.time()
    verdict = finish_drain(queue, cluster, ids)
    stall = longest_stall(queue, last_fault - FAULT_EVERY * rounds)
    print(f"terminated {killed} connections in {rounds} rounds; longest stall {stall:.2f}s; {verdict.summary()}")
    assert rounds >= 3 and killed >= 3 * rounds, "the faults did not hit the workers"
    assert stall < 3.0


def _pg_version() -> str:
    versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
    return versions[0] if len(versions) == 1 else ""


def restart_postgres() -> float:
    """Restart the local PostgreSQL cluster; returns when it accepts connections again."""
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", "-m", "fast", _pg_version(), "main", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return time.time()


def ensure_postgres_running() -> None:
    """Start the cluster again if a failed test left it down."""
    status = subprocess.run(["pg_ctlcluster", _pg_version(), "main", "status"], capture_output=True)
    if status.returncode != 0:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start"], timeout=60)


can_restart = (
    hasattr(os, "geteuid")
    and os.geteuid() == 0
    and shutil.which("pg_ctlcluster") is not None
    and bool(_pg_version())
    and urlparse(PG_ADMIN).hostname in ("127.0.0.1", "localhost")
)


@pytest.mark.skipif(not can_restart, reason="restarting PostgreSQL needs root, pg_ctlcluster and a local server")
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_workers_ride_out_a_postgres_restart(queue: JobQueue, cluster: Cluster) -> None:
    """A server restart mid-drain: no worker exits, nothing is lost or stuck, jobs complete again within seconds."""
    # Jobs long enough that the drain (about 5 s on 12 slots) outlasts the restart (about 2 s).
    ids = start_drain(queue, cluster, seconds=(0.02, 0.06))
    wait_until(lambda: completed(queue) >= JOBS // 10, 60, "the drain to get going")
    began = time.time()
    try:
        back = restart_postgres()
    finally:
        ensure_postgres_running()
    assert unfinished(queue) > 0, "the drain finished before the restart: it tested nothing"
    verdict = finish_drain(queue, cluster, ids)
    after = sorted(
        info.finished_at.timestamp()
        for info in queue.jobs(limit=JOBS * 2)
        if info.finished_at is not None and info.finished_at.timestamp() > back
    )
    recovery = after[0] - back if after else float("inf")
    print(f"restart took {back - began:.2f}s; first completion {recovery:.2f}s after; {verdict.summary()}")
    assert recovery < 5.0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_drain_survives_a_lock_held_past_the_busy_timeout(queue: JobQueue, cluster: Cluster, db_url: str) -> None:
    """Another process holds SQLite's write lock for 12 s: workers wait and retry, nothing is lost, none exits."""
    ids = start_drain(queue, cluster)
    wait_until(lambda: completed(queue) >= JOBS // 5, 60, "the drain to get going")
    path = Path(db_url.removeprefix("sqlite:///"))
    released = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            released.wait(12)
            conn.execute("COMMIT")
        finally:
            conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    holder.join()
    back = time.time()
    verdict = finish_drain(queue, cluster, ids)
    logs = cluster.logs()
    print(f"'database is locked' retries logged: {logs.count('database is locked')}; {verdict.summary()}")
    failed = [info.id for info in queue.jobs(status="failed")]
    assert not failed
    assert longest_stall(queue, back) < 5.0

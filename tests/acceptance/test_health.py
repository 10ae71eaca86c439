"""Health and metrics endpoints of a real worker process, probed over HTTP, and `jobkit health` for scripts."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from jobkit import JobQueue
from tests.acceptance.test_cli_worker import ROOT, env_for, start_worker
from tests.jobs import AddOne


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for_status(url: str, status: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            code, text = get(url)
            if code == status:
                return dict(json.loads(text))
            last = (code, text)
        except OSError as exc:  # the server is not up yet
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}; last: {last}")


def jobkit(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *args],
        env=env_for(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_a_worker_serves_health_and_metrics_and_jobkit_health_reads_them(db_url: str, producer: JobQueue) -> None:
    """/readyz and /healthz answer 200 once registered; /metrics counts its jobs; a stopped process fails probes."""
    health, metrics = free_port(), free_port()
    worker = start_worker(
        db_url, "--health-port", str(health), "--health-addr", "127.0.0.1",
        "--metrics-port", str(metrics), "--metrics-addr", "127.0.0.1",
    )  # fmt: skip
    base = f"http://127.0.0.1:{health}"
    try:
        ready = wait_for_status(f"{base}/readyz", 200)
        assert ready["ready"] is True and ready["checks"]["registered"] is True
        assert ready["checks"]["fenced"] is False and ready["checks"]["database_reachable"] is True
        live = wait_for_status(f"{base}/healthz", 200)
        assert live["checks"]["claim_loop_turned_seconds_ago"] < live["checks"]["stale_after"]
        assert get(f"{base}/nope")[0] == 404

        assert AddOne.perform_later(n=1).result(timeout=30) == 2
        code, text = get(f"http://127.0.0.1:{metrics}/metrics")
        assert code == 200
        assert 'jobkit_jobs_finished_total{name="tests.add_one",outcome="completed",queue="default"} 1.0' in text
        assert "jobkit_workers_alive 1.0" in text

        probe = jobkit(db_url, "health", "--url", f"{base}/readyz")
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert "HTTP 200 ok" in probe.stdout
        checked = jobkit(db_url, "health", "--json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert json.loads(checked.stdout)["checks"]["workers_alive"]["value"] == 1
        short = jobkit(db_url, "health", "--min-workers", "2")
        assert short.returncode == 1 and "workers alive: 1 (need 2): FAIL" in short.stdout

        # A frozen process answers nothing: the probe says so with exit 3.
        worker.send_signal(signal.SIGSTOP)
        try:
            frozen = jobkit(db_url, "health", "--url", f"{base}/healthz", "--timeout", "1")
            assert frozen.returncode == 3, frozen.stdout + frozen.stderr
            assert "cannot reach" in frozen.stderr
        finally:
            worker.send_signal(signal.SIGCONT)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert "health at http://127.0.0.1:" in output


def test_jobkit_health_fails_without_workers_and_on_a_long_wait(db_url: str, producer: JobQueue) -> None:
    """No live worker: exit 1; --min-workers 0 with a job waiting past --max-ready-age: exit 1; else 0."""
    alone = jobkit(db_url, "health")
    assert alone.returncode == 1 and "unhealthy" in alone.stdout
    assert jobkit(db_url, "health", "--min-workers", "0").returncode == 0
    AddOne.perform_later(n=1)
    time.sleep(0.3)
    late = jobkit(db_url, "health", "--min-workers", "0", "--max-ready-age", "0.1", "--json")
    assert late.returncode == 1, late.stdout + late.stderr
    assert json.loads(late.stdout)["checks"]["oldest_ready_age"]["ok"] is False


def test_health_of_an_in_process_worker_follows_its_lease(queue: JobQueue) -> None:
    """Not started: both 503. Started: both 200. Fenced (lease maybe lost): /readyz 503 while /healthz stays 200."""
    from jobkit.contrib.health import serve_health

    server = serve_health(queue, 0, "127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(f"{base}/healthz")[0] == 503
        assert get(f"{base}/readyz")[0] == 503
        queue.start()
        wait_for_status(f"{base}/readyz", 200)
        queue.worker.lease.fence("a test fences the worker")
        failing = wait_for_status(f"{base}/readyz", 503)
        assert failing["checks"]["fenced"] is True and failing["status"] == "failing"
        assert get(f"{base}/healthz")[0] == 200
        queue.worker.lease.beat_once()  # a heartbeat that lands lifts the fence
        wait_for_status(f"{base}/readyz", 200)
    finally:
        server.close()


def test_a_port_already_taken_ends_the_worker_with_exit_2(db_url: str) -> None:
    """--health-port on a port in use: one line naming it, exit 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker(db_url, "--health-port", str(port), "--health-addr", "127.0.0.1")
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 2, output
    assert f"cannot serve health checks on 127.0.0.1:{port}" in output
    assert "Traceback" not in output

"""`jobkit dashboard` as a real process: serves the pages over the database, closed until configured."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard(db_url: str, *args: str, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run `jobkit dashboard` until the block ends; yields its base URL and process once it answers."""
    port = free_port()
    for name in ("JOBKIT_DASHBOARD_USER", "JOBKIT_DASHBOARD_PASSWORD", "JOBKIT_DASHBOARD_READ_ONLY"):
        env.setdefault(name, "")
    process = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "dashboard", "--database-url", db_url, "--port", str(port), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "jobkit dashboard did not start listening"
                time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()  # never leave a server behind, whatever the test found
                process.wait()


def status(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """The status and body of a GET."""
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_dashboard_command_serves_with_credentials(db_url: str) -> None:
    """With JOBKIT_DASHBOARD_USER/PASSWORD it asks for them and then serves the job types of --app."""
    with dashboard(
        db_url, "--app", "tests.dashboard_jobs", JOBKIT_DASHBOARD_USER="ops", JOBKIT_DASHBOARD_PASSWORD="pw"
    ) as (base, _):
        assert status(f"{base}/")[0] == 401
        code, body = status(f"{base}/jobs", ("ops", "pw"))
        assert code == 200 and "dash.unused" in body


def test_dashboard_command_is_closed_until_configured(db_url: str) -> None:
    """Started with nothing configured, it refuses every request and says how to open it."""
    with dashboard(db_url) as (base, _):
        code, body = status(f"{base}/")
        assert code == 403 and "JOBKIT_DASHBOARD_PASSWORD" in body


def test_dashboard_command_read_only(db_url: str) -> None:
    """--read-only lets anyone look and shows no action."""
    with dashboard(db_url, "--read-only") as (base, _):
        code, body = status(f"{base}/queues")
        assert code == 200 and 'method="post"' not in body


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_dashboard_command_stops_on_a_signal_with_a_stream_open(db_url: str, signum: int) -> None:
    """An open event stream does not hold the server up: SIGINT or SIGTERM ends it within seconds, status 0."""
    with dashboard(db_url, "--read-only") as (base, process):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stream:
            stream.sendall(b"GET /live HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
            assert b"text/event-stream" in stream.recv(4096)
            process.send_signal(signum)
            try:
                assert process.wait(10) == 0, process.communicate()[0]
            except subprocess.TimeoutExpired:
                process.kill()
                raise AssertionError(process.communicate()[0]) from None

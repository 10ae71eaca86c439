"""A real dashboard server, a real worker process and headless Chromium (Debian's), driven by Playwright.

Chromium comes from the system (``make browser-deps`` installs Debian's package); Playwright's
own browser downloads are never used. Without Chromium these tests skip locally and fail under
CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright

import jobkit
import jobkit.dashboard
from jobkit import JobQueue
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "ops", "pw"


def chromium_path() -> str:
    """Debian's Chromium, or a skip (locally) / failure (CI=true)."""
    found = os.environ.get("JOBKIT_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is not installed and CI=true: run `make browser-deps`")
    pytest.skip("chromium is not installed (make browser-deps)")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(db_url: str) -> Iterator[tuple[str, JobQueue]]:
    """The dashboard served by uvicorn on a thread of this process: (its base URL, its queue)."""
    queue = jobkit.configure(database_url=db_url, **FAST)
    port = free_port()
    web = jobkit.dashboard.app(queue, user=USER, password=PASSWORD)
    config = uvicorn.Config(
        web, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, name="dashboard-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "the dashboard server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", queue
    finally:
        running.should_exit = True
        thread.join(10)
        queue.close()
        JobQueue.set_instance(None)


@pytest.fixture
def worker(db_url: str) -> Iterator[subprocess.Popen[str]]:
    """`jobkit worker --app tests.dashboard_jobs` as a real process on the test database."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBKIT_DATABASE_URL": db_url,
        **{f"JOBKIT_{key.upper()}": str(value) for key, value in FAST.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.dashboard_jobs", "--concurrency", "4"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser_page(server: tuple[str, JobQueue]) -> Iterator[Page]:
    """A Playwright page in headless Chromium, logged in to the dashboard."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()

"""Take the dashboard screenshots shown in docs/dashboard.md (run: ``.venv/bin/python docs/screenshots.py``).

Seeds a fresh SQLite database with jobs in every state (a failed one with its traceback, long
ones reporting progress, a paused queue), serves the dashboard with uvicorn, runs a worker in
this process, and photographs each page in Debian's headless Chromium through Playwright.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jobkit  # noqa: E402
import jobkit.dashboard  # noqa: E402
from tests.dashboard_jobs import Flaky, Mail, Steps  # noqa: E402

OUT = ROOT / "docs" / "images"
PAGES = {
    "overview": "/",
    "jobs": "/jobs",
    "job": "/jobs/{failed}",
    "running": "/running",
    "queues": "/queues",
    "enqueue": "/enqueue/dash.mail",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="jobkit-shots-"))
    queue = jobkit.configure(database_url=f"sqlite:///{workdir / 'shots.sqlite3'}", concurrency=4, poll_interval=0.2)
    flag = workdir / "flag"
    flag.write_text("up")
    failed = Flaky.perform_later(flag=str(flag)).id
    Mail.perform_all_later([{"to": f"user{i}@example.com", "count": 1 + i % 3} for i in range(25)])
    queue.start()
    time.sleep(2)
    long_jobs = [Steps.perform_later(steps=200, pause=0.1) for _ in range(3)]
    Mail.perform_later(to="later@example.com")
    queue.pause_queue("mailers")
    Mail.perform_all_later([{"to": f"held{i}@example.com"} for i in range(4)])
    time.sleep(2)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(jobkit.dashboard.app(queue, user="ops", password="pw"), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (make browser-deps)")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context(
                http_credentials={"username": "ops", "password": "pw"}, viewport={"width": 1280, "height": 860}
            )
            page = context.new_page()
            for name, path in PAGES.items():
                page.goto(f"http://127.0.0.1:{port}{path.format(failed=failed)}")
                page.wait_for_timeout(1000)  # the event stream keeps the network busy: wait a moment instead
                page.screenshot(path=str(OUT / f"dashboard-{name}.png"), full_page=False)
                print("wrote", OUT / f"dashboard-{name}.png")
            browser.close()
    finally:
        server.should_exit = True
        for handle in long_jobs:
            handle.cancel()
        queue.stop(grace=5)
        queue.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

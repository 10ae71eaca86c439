"""End to end in headless Chromium: the dashboard over a real worker process, updating live."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from jobkit import JobHandle, JobQueue
from tests.dashboard_jobs import Flaky, Mail, Steps

pytestmark = pytest.mark.browser


def mark_page(page: Page) -> None:
    """Leave a mark in the page's window: a reload would wipe it."""
    page.evaluate("window.__jobkitMark = 42")


def still_marked(page: Page) -> bool:
    """Whether the page is still the one that was marked (nothing reloaded it)."""
    return bool(page.evaluate("window.__jobkitMark === 42"))


def wait_status(handle: JobHandle, status: str, timeout: float = 20) -> None:
    """Wait until the database says the job is in ``status`` (a black-box poll of a real worker process)."""
    deadline = time.monotonic() + timeout
    while handle.status() != status:
        assert time.monotonic() < deadline, f"job {handle.id} is {handle.status()}, not {status}"
        time.sleep(0.05)


def wait_live(page: Page) -> None:
    """Wait until the page's event stream is connected."""
    page.wait_for_selector("body[data-live-connected=true]")


def test_failed_job_is_retried_from_the_ui_and_completes_live(
    browser_page: Page, server: tuple[str, JobQueue], worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    """A failed job shows its traceback, is retried with the button, and its state turns completed without a reload."""
    base, _queue = server
    flag, hold = tmp_path / "flag", tmp_path / "hold"
    flag.write_text("up")
    handle = Flaky.perform_later(flag=str(flag), hold=str(hold))  # no hold file yet: the first attempt fails at once
    page = browser_page
    page.goto(f"{base}/jobs?type=dash.flaky")
    wait_live(page)
    row = page.locator(f"#job-{handle.id}")
    expect(row.locator(".state")).to_have_text("failed", timeout=20_000)  # live: the page was open before
    page.click(f"#job-{handle.id} a")
    expect(page.locator("pre.traceback")).to_contain_text("RuntimeError: flag flag is up")
    expect(page.locator("pre.traceback")).to_contain_text("<script>alert('x')</script>")  # shown as text
    flag.unlink()
    hold.write_text("wait")  # the retried attempt waits for it, so the page can be seen to change
    page.click("button:has-text('Retry')")
    page.wait_for_load_state()
    wait_live(page)
    wait_status(handle, "running")
    expect(page.locator("#job-live .state").first).to_have_text("running", timeout=20_000)
    mark_page(page)
    hold.unlink()
    expect(page.locator("#job-live .state").first).to_have_text("completed", timeout=20_000)
    assert still_marked(page)
    assert handle.status() == "completed"


def test_progress_bar_moves_on_the_running_page(
    browser_page: Page, server: tuple[str, JobQueue], worker: subprocess.Popen[str]
) -> None:
    """A long job's progress bar on the running page advances while the page stays loaded."""
    base, _queue = server
    handle = Steps.perform_later(steps=20, pause=0.3)
    page = browser_page
    page.goto(f"{base}/running")
    wait_live(page)
    bar = page.locator(f"#job-{handle.id} progress")
    expect(bar).to_be_visible(timeout=20_000)
    mark_page(page)
    first = float(bar.get_attribute("value") or 0)
    page.wait_for_function(
        f"() => {{ const b = document.querySelector('#job-{handle.id} progress'); "
        f"return b && parseFloat(b.getAttribute('value')) > {first}; }}",
        timeout=20_000,
    )
    assert still_marked(page)
    handle.cancel()


def test_pausing_a_queue_from_the_ui_stops_claims(
    browser_page: Page, server: tuple[str, JobQueue], worker: subprocess.Popen[str]
) -> None:
    """With mailers paused from the queues page the worker leaves its jobs pending; resumed, it runs them."""
    base, queue = server
    page = browser_page
    page.goto(f"{base}/queues")
    page.click("tr[data-queue=mailers] button:has-text('Pause')")
    expect(page.locator("tr[data-queue=mailers] .state")).to_have_text("paused")
    assert queue.paused_queues() == ["mailers"]
    handle = Mail.perform_later(to="a@b.c")
    time.sleep(1.5)  # the worker polls every 0.2 s and is woken by the enqueue: it would have claimed by now
    assert handle.status() == "pending"
    page.click("tr[data-queue=mailers] button:has-text('Resume')")
    assert handle.result(timeout=20) == {"sent": 1}


def test_enqueue_form_refuses_invalid_input_with_the_schemas_message(
    browser_page: Page, server: tuple[str, JobQueue]
) -> None:
    """The schema's own message is shown for a refused value; a valid form lands on the new job."""
    base, queue = server
    page = browser_page
    page.goto(f"{base}/enqueue/dash.mail")
    page.fill("input[name=to]", "a@b.c")
    page.fill("input[name=count]", "50")
    page.click("button:has-text('Enqueue')")
    expect(page.locator(".problem")).to_contain_text("less than or equal to 10")
    assert queue.stats()["by_status"] == {}
    page.fill("input[name=count]", "2")
    page.click("button:has-text('Enqueue')")
    expect(page.locator("h1")).to_contain_text("dash.mail")
    assert queue.stats()["by_status"] == {"pending": 1}

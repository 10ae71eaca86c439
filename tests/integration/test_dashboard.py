"""The dashboard through Starlette's test client, on SQLite and PostgreSQL: pages, actions, access, escaping."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import jobkit.dashboard
from jobkit import JobQueue
from tests.dashboard_jobs import XSS, Flaky, Hostile, Mail, Steps

PAGES = ["/", "/jobs", "/running", "/queues", "/workers", "/schedules", "/enqueue", "/enqueue/dash.mail", "/audit"]


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP basic credentials."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def csrf_of(client: TestClient) -> str:
    """The CSRF token the dashboard gave this client (its cookie)."""
    token = client.cookies.get("jobkit_csrf")
    assert token, "the dashboard sets its CSRF cookie on the first response"
    return token


@pytest.fixture
def client(queue: JobQueue) -> Iterator[TestClient]:
    """An admin's client (HTTP basic) on a dashboard over the test queue."""
    web = jobkit.dashboard.app(queue, user="ops", password="s3cret", redact=("password",))
    with TestClient(web, headers=basic("ops", "s3cret")) as c:
        c.get("/")
        yield c


def post(client: TestClient, path: str, **fields: object) -> object:
    """POST a form with the client's CSRF token, not following the redirect."""
    return client.post(path, data={"csrf": csrf_of(client), **fields}, follow_redirects=False)


def failed_job(queue: JobQueue, tmp_path: Path) -> int:
    """A dash.flaky job that failed once (its flag file stays up)."""
    flag = tmp_path / "flag"
    flag.write_text("up")
    handle = Flaky.perform_later(flag=str(flag))
    queue.drain()
    assert handle.status() == "failed"
    return handle.id


# -- access -------------------------------------------------------------------------------------


def test_closed_until_configured(queue: JobQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no credentials, no read-only mode and no auth callable, every request is refused."""
    for name in ("JOBKIT_DASHBOARD_USER", "JOBKIT_DASHBOARD_PASSWORD", "JOBKIT_DASHBOARD_READ_ONLY"):
        monkeypatch.delenv(name, raising=False)
    with TestClient(jobkit.dashboard.app(queue)) as c:
        for path in ["/", "/jobs", "/static/dashboard.js", "/live"]:
            response = c.get(path)
            assert response.status_code == 403
            assert "JOBKIT_DASHBOARD_USER" in response.text


def test_basic_credentials_from_the_environment(queue: JobQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBKIT_DASHBOARD_USER/PASSWORD open it to HTTP basic; a missing or wrong password is asked again."""
    monkeypatch.setenv("JOBKIT_DASHBOARD_USER", "ops")
    monkeypatch.setenv("JOBKIT_DASHBOARD_PASSWORD", "pw")
    with TestClient(jobkit.dashboard.app(queue)) as c:
        missing = c.get("/")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Basic")
        assert c.get("/", headers=basic("ops", "wrong")).status_code == 401
        assert c.get("/", headers=basic("ops", "pw")).status_code == 200


def test_auth_callable_decides_roles(queue: JobQueue) -> None:
    """An auth callable's None refuses, "read_only" shows no actions and refuses POSTs, "admin" acts."""
    roles = {"alice": "admin", "bob": "read_only"}
    web = jobkit.dashboard.app(queue, auth=lambda request: roles.get(request.headers.get("x-user", "")))
    handle = Mail.perform_later(to="a@b.c")
    with TestClient(web) as c:
        assert c.get("/jobs").status_code == 403
        page = c.get(f"/jobs/{handle.id}", headers={"x-user": "bob"})
        assert page.status_code == 200 and 'method="post"' not in page.text
        refused = c.post(
            f"/jobs/{handle.id}/cancel", data={"csrf": csrf_of(c)}, headers={"x-user": "bob"}, follow_redirects=False
        )
        assert refused.status_code == 403
        assert handle.status() == "pending"
        done = c.post(
            f"/jobs/{handle.id}/cancel", data={"csrf": csrf_of(c)}, headers={"x-user": "alice"}, follow_redirects=False
        )
        assert done.status_code == 303
        assert handle.status() == "cancelled"


@pytest.mark.parametrize("path", PAGES)
def test_read_only_mode_hides_every_action(queue: JobQueue, tmp_path: Path, path: str) -> None:
    """JOBKIT_DASHBOARD_READ_ONLY: anyone may look; no page holds a form that posts."""
    failed_job(queue, tmp_path)
    with TestClient(jobkit.dashboard.app(queue, read_only=True)) as c:
        page = c.get(path)
        assert page.status_code == 200
        assert 'method="post"' not in page.text


def test_read_only_refuses_posts(queue: JobQueue, tmp_path: Path) -> None:
    """Read-only caps even valid credentials: a POST with a good CSRF token is refused."""
    job_id = failed_job(queue, tmp_path)
    web = jobkit.dashboard.app(queue, read_only=True, user="ops", password="pw")
    with TestClient(web, headers=basic("ops", "pw")) as c:
        c.get("/")
        assert post(c, f"/jobs/{job_id}/retry").status_code == 403  # type: ignore[attr-defined]
        assert post(c, "/queues/pause", queue="default").status_code == 403  # type: ignore[attr-defined]
    assert queue.job_info(job_id).status == "failed"  # type: ignore[union-attr]
    assert queue.paused_queues() == []


def test_post_without_the_csrf_token_is_refused(client: TestClient, queue: JobQueue, tmp_path: Path) -> None:
    """A POST that lacks the token, or carries another one, changes nothing."""
    job_id = failed_job(queue, tmp_path)
    assert client.post(f"/jobs/{job_id}/retry", data={}, follow_redirects=False).status_code == 403
    assert client.post(f"/jobs/{job_id}/retry", data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    assert client.post("/queues/pause", data={"queue": "default"}, follow_redirects=False).status_code == 403
    cross_site = client.post(
        f"/jobs/{job_id}/retry",
        data={"csrf": csrf_of(client)},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert cross_site.status_code == 403
    assert queue.job_info(job_id).status == "failed"  # type: ignore[union-attr]
    assert queue.paused_queues() == []


def test_no_state_change_through_get(client: TestClient, queue: JobQueue, tmp_path: Path) -> None:
    """Action URLs answer GET with 405 and leave the job as it was."""
    job_id = failed_job(queue, tmp_path)
    for path in (f"/jobs/{job_id}/retry", f"/jobs/{job_id}/delete", "/queues/pause", "/clear", "/jobs/bulk"):
        assert client.get(path).status_code in (404, 405)
    assert queue.job_info(job_id).status == "failed"  # type: ignore[union-attr]


def test_security_headers(client: TestClient) -> None:
    """Every response carries a CSP without inline scripts, refuses framing and sniffing."""
    for path in ("/", "/static/dashboard.js", "/no-such-page"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
    with TestClient(client.app, headers=basic("ops", "s3cret")) as fresh:
        cookie = fresh.get("/").headers["set-cookie"]
    assert "jobkit_csrf=" in cookie and "SameSite=Strict" in cookie and "HttpOnly" in cookie


def test_pages_have_no_inline_scripts(client: TestClient) -> None:
    """Scripts come from the dashboard's own static file only (the CSP would block anything else)."""
    for path in PAGES:
        page = client.get(path).text
        scripts = re.findall(r"<script\b[^>]*>", page)
        assert scripts == ['<script src="/static/dashboard.js" defer>'], path
        assert " on" + "click=" not in page and "style=" not in page


# -- escaping -----------------------------------------------------------------------------------


def test_stored_markup_is_escaped_everywhere(client: TestClient, queue: JobQueue) -> None:
    """Markup in a job's arguments, name, stage, message, checkpoint and traceback is shown as text."""
    handle = Hostile.perform_later(text=XSS)
    queue.drain()
    for path in [*PAGES, f"/jobs/{handle.id}", "/jobs?q=boom", f"/jobs?type=dash.xss{XSS}"]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
    detail = client.get(f"/jobs/{handle.id}").text
    assert "&lt;script&gt;alert(" in detail
    for fragment in ("boom&lt;script&gt;", "stage&lt;script&gt;", "message&lt;script&gt;", "cp&lt;script&gt;"):
        assert fragment in detail


def test_secrets_and_redacted_fields_are_masked(client: TestClient) -> None:
    """SecretStr fields and names given to redact= never reach the page."""
    handle = Mail.perform_later(to="a@b.c", api_key="key-123", password="hunter2")
    page = client.get(f"/jobs/{handle.id}").text
    assert "a@b.c" in page
    assert "key-123" not in page and "hunter2" not in page
    assert page.count("**********") == 2


# -- pages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders(client: TestClient, queue: JobQueue, tmp_path: Path, path: str) -> None:
    """Each page answers 200 with the navigation, over a database with jobs in several states."""
    failed_job(queue, tmp_path)
    Mail.perform_later(to="a@b.c")
    page = client.get(path)
    assert page.status_code == 200
    assert "<nav>" in page.text and 'href="/jobs"' in page.text


def test_job_list_names_every_registered_type(client: TestClient) -> None:
    """A type with no rows at all is listed with zero counts and offered as a filter."""
    page = client.get("/jobs").text
    assert '<option value="dash.unused">' in page
    assert 'href="/jobs?type=dash.unused"' in page


def test_job_list_filters(client: TestClient, queue: JobQueue, tmp_path: Path) -> None:
    """State, type, queue, stage, worker, text and time range each narrow the list."""
    failed = failed_job(queue, tmp_path)
    mail = Mail.perform_later(to="a@b.c").id
    ids = lambda query: set(map(int, re.findall(r'<tr id="job-(\d+)"', client.get(f"/jobs?{query}").text)))  # noqa: E731
    assert ids("") == {failed, mail}
    assert ids("state=failed") == {failed}
    assert ids("state=failed&state=pending") == {failed, mail}
    assert ids("type=dash.mail") == {mail}
    assert ids("queue=mailers") == {mail}
    assert ids("stage=checking") == {failed}
    assert ids("q=flag+is+up") == {failed}
    worker = queue.job_info(failed).worker_id  # type: ignore[union-attr]
    if worker:
        assert ids(f"worker={worker}") == {failed}
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    earlier = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert ids(f"since={later}") == set()
    assert ids(f"since={earlier}&until={later}") == {failed, mail}
    assert client.get("/jobs?state=bogus").status_code == 400


def test_job_list_pages_by_cursor(client: TestClient, queue: JobQueue) -> None:
    """Past 50 jobs the list links to older ones, and that page holds the rest, none twice."""
    handles = Mail.perform_all_later([{"to": f"u{i}@b.c"} for i in range(60)])
    first = client.get("/jobs").text
    link = re.search(r'href="(/jobs\?[^"]*before=\d+)"', first)
    assert link is not None
    second = client.get(link.group(1).replace("&amp;", "&")).text
    seen = re.findall(r'<tr id="job-(\d+)"', first) + re.findall(r'<tr id="job-(\d+)"', second)
    assert sorted(map(int, seen)) == sorted(h.id for h in handles)


def test_job_list_sorts_its_rows(client: TestClient) -> None:
    """Sorting by id ascending reverses the newest-first order."""
    ids = [h.id for h in Mail.perform_all_later([{"to": "a@b.c"}] * 3)]
    shown = re.findall(r'<tr id="job-(\d+)"', client.get("/jobs?sort=id&dir=asc").text)
    assert list(map(int, shown)) == sorted(ids)


def test_job_detail_shows_attempts_checkpoint_and_progress(client: TestClient, queue: JobQueue) -> None:
    """A failed job's page shows its traceback, its checkpoint's stage and size, its stage and message."""
    handle = Hostile.perform_later(text="hello")
    queue.drain()
    page = client.get(f"/jobs/{handle.id}").text
    assert "Traceback (most recent call last)" in page
    assert "ValueError" in page
    assert "bytes" in page and "cp&lt;script&gt;" in page
    assert 'value="50' in page
    assert client.get("/jobs/999999").status_code == 404


def test_overview_counts_and_throughput(client: TestClient, queue: JobQueue, tmp_path: Path) -> None:
    """The overview counts jobs by state and shows the last hour's completed and failed jobs from the rollup."""
    failed_job(queue, tmp_path)
    Mail.perform_later(to="a@b.c")
    Mail.perform_later(to="b@b.c")
    queue.drain()
    page = client.get("/").text
    assert "2 completed, 1 failed" in page
    assert "33.3% failures" in page


def test_running_page_shows_progress(client: TestClient, queue: JobQueue) -> None:
    """A running job appears on the running page with its stage and progress bar."""
    handle = Steps.perform_later(steps=30, pause=0.1)
    queue.start()
    try:
        for event in handle.stream(timeout=20):
            if event.type == "progress" and (event.percent or 0) > 0:
                break
        page = client.get("/running").text
        assert f'id="job-{handle.id}"' in page
        assert "<progress" in page and "step " in page
    finally:
        handle.cancel()
        queue.stop(grace=5)


def test_mounted_under_a_prefix(queue: JobQueue) -> None:
    """Mounted at /admin/jobkit, links, static files and redirects stay under the prefix."""
    web = Starlette(routes=[Mount("/admin/jobkit", app=jobkit.dashboard.app(queue, user="u", password="p"))])
    handle = Mail.perform_later(to="a@b.c")
    with TestClient(web, headers=basic("u", "p")) as c:
        page = c.get("/admin/jobkit/jobs").text
        assert 'href="/admin/jobkit/static/dashboard.css"' in page
        assert f'href="/admin/jobkit/jobs/{handle.id}"' in page
        assert c.get("/admin/jobkit/static/dashboard.js").status_code == 200
        done = c.post(
            f"/admin/jobkit/jobs/{handle.id}/cancel",
            data={"csrf": c.cookies["jobkit_csrf"], "next": "https://elsewhere.example/"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/admin/jobkit/"


def test_job_detail_says_why_a_job_waits(client: TestClient, queue: JobQueue) -> None:
    """A pending job in a paused queue says so on its page."""
    handle = Mail.perform_later(to="a@b.c")
    queue.pause_queue("mailers")
    page = client.get(f"/jobs/{handle.id}").text
    assert "why it waits" in page
    assert "paused" in re.search(r'<dd class="why">(.*?)</dd>', page).group(1)  # type: ignore[union-attr]


def test_workers_page_shows_a_running_worker(client: TestClient, queue: JobQueue) -> None:
    """A started worker is listed alive with its concurrency and pool."""
    queue.start()
    try:
        page = client.get("/workers").text
        assert "alive" in page and queue.worker.id in page
        assert "threads" in page
    finally:
        queue.stop(grace=5)

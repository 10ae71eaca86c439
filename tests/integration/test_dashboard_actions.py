"""The dashboard's actions and enqueue form through Starlette's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import jobkit.dashboard
from jobkit import JobQueue
from jobkit.dashboard.live import Hub
from tests.conftest import FAST
from tests.dashboard_jobs import Flaky, Mail


@pytest.fixture
def client(queue: JobQueue) -> Iterator[TestClient]:
    """An admin's client (HTTP basic) on a dashboard over the test queue."""
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
    with TestClient(jobkit.dashboard.app(queue, user="ops", password="pw"), headers=auth) as c:
        c.get("/")
        yield c


def post(client: TestClient, path: str, data: dict[str, Any] | list[tuple[str, str]] | None = None) -> Any:
    """POST a form with the client's CSRF token, not following the redirect."""
    form: dict[str, list[str]] = {"csrf": [client.cookies["jobkit_csrf"]]}
    for key, value in data.items() if isinstance(data, dict) else data or []:
        form.setdefault(key, []).append(value)
    return client.post(path, data=form, follow_redirects=False)


def audit(queue: JobQueue) -> list[tuple[str, str, list[int], str]]:
    """The audit log, newest first: (actor, action, job ids, outcome)."""
    return [(e.actor, e.action, json.loads(e.job_ids), e.outcome) for e in queue.store.audit_log()]


def failed_job(queue: JobQueue, tmp_path: Path, name: str = "flag") -> tuple[int, Path]:
    flag = tmp_path / name
    flag.write_text("up")
    handle = Flaky.perform_later(flag=str(flag))
    queue.drain()
    assert handle.status() == "failed"
    return handle.id, flag


def test_retry_a_failed_job(client: TestClient, queue: JobQueue, tmp_path: Path) -> None:
    """Retry puts a failed job back to pending; it then completes; the audit log names who did it."""
    job_id, flag = failed_job(queue, tmp_path)
    flag.unlink()
    response = post(client, f"/jobs/{job_id}/retry", {"next": f"/jobs/{job_id}"})
    assert response.status_code == 303 and response.headers["location"] == f"/jobs/{job_id}"
    assert queue.job_info(job_id).status == "pending"  # type: ignore[union-attr]
    queue.drain()
    assert queue.job_info(job_id).status == "completed"  # type: ignore[union-attr]
    assert audit(queue)[0] == ("ops", "retry", [job_id], "done")
    assert "retry" in client.get("/audit").text


def test_cancel_pause_and_resume(client: TestClient, queue: JobQueue) -> None:
    """Pause holds a pending job, resume releases it, cancel ends it."""
    job_id = Mail.perform_later(to="a@b.c").id
    post(client, f"/jobs/{job_id}/pause")
    assert queue.job_info(job_id).status == "paused"  # type: ignore[union-attr]
    post(client, f"/jobs/{job_id}/resume")
    assert queue.job_info(job_id).status == "pending"  # type: ignore[union-attr]
    post(client, f"/jobs/{job_id}/cancel")
    assert queue.job_info(job_id).status == "cancelled"  # type: ignore[union-attr]
    assert [a[1] for a in audit(queue)] == ["cancel", "resume", "pause"]


@pytest.mark.parametrize(("action", "final"), [("discard", "failed"), ("kill", "cancelled"), ("delete", None)])
def test_destructive_actions_ask_first(client: TestClient, queue: JobQueue, action: str, final: str | None) -> None:
    """Discard, kill and delete answer with a confirmation page; only the confirmed POST acts."""
    job_id = Mail.perform_later(to="a@b.c").id
    if action == "delete":
        post(client, f"/jobs/{job_id}/cancel")
    before = queue.job_info(job_id).status  # type: ignore[union-attr]
    asked = post(client, f"/jobs/{job_id}/{action}", {"next": "/jobs"})
    assert asked.status_code == 200 and "Please confirm" in asked.text
    assert 'name="confirmed" value="yes"' in asked.text
    assert queue.job_info(job_id).status == before  # type: ignore[union-attr]
    done = post(client, f"/jobs/{job_id}/{action}", {"next": "/jobs", "confirmed": "yes"})
    assert done.status_code == 303
    info = queue.job_info(job_id)
    assert (info.status if info else None) == final


def test_bulk_retry_of_a_selection(client: TestClient, queue: JobQueue, tmp_path: Path) -> None:
    """Selected jobs are retried together after a confirmation; unselected ones stay as they were."""
    first, _ = failed_job(queue, tmp_path, "a")
    second, _ = failed_job(queue, tmp_path, "b")
    third, _ = failed_job(queue, tmp_path, "c")
    fields = [("action", "retry"), ("ids", str(first)), ("ids", str(second)), ("next", "/jobs")]
    asked = post(client, "/jobs/bulk", fields)
    assert "Retry 2 jobs?" in asked.text
    done = post(client, "/jobs/bulk", [*fields, ("confirmed", "yes")])
    assert done.status_code == 303
    states = {i: queue.job_info(i).status for i in (first, second, third)}  # type: ignore[union-attr]
    assert states == {first: "pending", second: "pending", third: "failed"}
    assert audit(queue)[0] == ("ops", "bulk retry", [first, second], "2 done")


def test_bulk_needs_a_selection(client: TestClient) -> None:
    """A bulk action with no job selected is refused with a reason."""
    assert post(client, "/jobs/bulk", {"action": "retry"}).status_code == 400


def test_clear_completed_older_than(client: TestClient, queue: JobQueue) -> None:
    """Clearing completed jobs older than 0 hours deletes them after a confirmation, and nothing else."""
    done = Mail.perform_later(to="a@b.c").id
    queue.drain()
    waiting = Mail.perform_later(to="b@b.c").id
    fields = {"state": "completed", "older_than_hours": "0", "next": "/jobs"}
    assert "Please confirm" in post(client, "/clear", fields).text
    assert queue.job_info(done) is not None
    post(client, "/clear", {**fields, "confirmed": "yes"})
    assert queue.job_info(done) is None
    assert queue.job_info(waiting) is not None
    assert audit(queue)[0][1:] == ("clear", [], "1 deleted")
    assert post(client, "/clear", {"state": "pending", "confirmed": "yes"}).status_code == 400


def test_pause_and_resume_a_queue(client: TestClient, queue: JobQueue) -> None:
    """Pausing a queue from the dashboard stops claims from it until it is resumed."""
    handle = Mail.perform_later(to="a@b.c")
    post(client, "/queues/pause", {"queue": "mailers", "next": "/queues"})
    assert queue.paused_queues() == ["mailers"]
    assert queue.drain() == 0
    assert "Resume" in client.get("/queues").text
    post(client, "/queues/resume", {"queue": "mailers"})
    assert queue.drain() == 1
    assert handle.status() == "completed"
    assert [a[1] for a in audit(queue)] == ["queue resume", "queue pause"]


def test_enqueue_form_is_built_from_the_schema(client: TestClient) -> None:
    """The form has one input per field, typed as the schema says, secrets as password inputs."""
    page = client.get("/enqueue/dash.mail").text
    assert 'name="to"' in page and "who gets it" in page
    assert 'type="number" name="count" value="1"' in page
    assert 'type="checkbox" name="urgent"' in page
    assert 'type="password" name="api_key"' in page


def test_enqueue_refuses_invalid_input_with_the_schemas_message(client: TestClient, queue: JobQueue) -> None:
    """Input the schema refuses is shown with pydantic's message, and nothing is enqueued."""
    refused = post(client, "/enqueue/dash.mail", {"to": "a@b.c", "count": "50"})
    assert refused.status_code == 422
    assert "less than or equal to 10" in refused.text
    assert 'value="50"' in refused.text  # the form keeps what was typed
    assert queue.stats()["by_status"] == {}


def test_enqueue_valid_input(client: TestClient, queue: JobQueue) -> None:
    """Valid input is enqueued with typed arguments, and the browser is sent to the new job."""
    done = post(client, "/enqueue/dash.mail", {"to": "a@b.c", "count": "3", "urgent": "on", "priority": "-2"})
    assert done.status_code == 303
    job_id = int(re.findall(r"/jobs/(\d+)$", done.headers["location"])[0])
    info = queue.job_info(job_id)
    assert info is not None
    assert (info.args["count"], info.args["urgent"], info.priority, info.queue) == (3, True, -2, "mailers")
    assert audit(queue)[0] == ("ops", "enqueue", [job_id], "pending")


def test_live_stream_hears_another_process(queue: JobQueue, db_url: str) -> None:
    """A change made through another queue (its own connections, as another process would) reaches the stream."""
    hub = Hub(queue)
    other = JobQueue(database_url=db_url, **FAST)

    async def first_change() -> str:
        stream = hub.stream(lambda: False)
        assert (await anext(stream)).startswith("retry:")
        # Give the notifier a moment to start listening before the other process writes.
        await asyncio.sleep(0.5)
        await asyncio.to_thread(other.enqueue, "dash.mail", {"to": "a@b.c"})
        try:
            return await asyncio.wait_for(anext(stream), 5)
        finally:
            await stream.aclose()

    try:
        assert asyncio.run(first_change()).startswith("event: change")
    finally:
        hub.close()
        other.close()


def test_bulk_over_everything_matching_the_filter(client: TestClient, queue: JobQueue, tmp_path: Path) -> None:
    """ "Retry everything failed" runs as a tracked jobkit.bulk job that retries each match, and only those."""
    failed = [failed_job(queue, tmp_path, name)[0] for name in ("a", "b", "c")]
    waiting = Mail.perform_later(to="a@b.c").id
    for name in ("a", "b", "c"):
        (tmp_path / name).unlink()
    fields = {"action": "retry", "scope": "filter", "state": "failed", "next": "/jobs"}
    asked = post(client, "/jobs/bulk", fields)
    assert "Retry every job matching states=[&#39;failed&#39;]?" in asked.text
    assert all(queue.job_info(i).status == "failed" for i in failed)  # type: ignore[union-attr]
    done = post(client, "/jobs/bulk", {**fields, "confirmed": "yes"})
    bulk_id = int(done.headers["location"].rsplit("/", 1)[1])
    bulk = queue.job_info(bulk_id)
    assert bulk is not None and bulk.name == "jobkit.bulk" and bulk.status == "pending"
    queue.drain()
    bulk = queue.job_info(bulk_id)
    assert bulk is not None and bulk.status == "completed"
    assert bulk.result == {"action": "retry", "jobs": 3, "outcomes": {"done": 3}}
    assert all(queue.job_info(i).status == "completed" for i in failed)  # type: ignore[union-attr]
    assert queue.job_info(waiting).status == "completed"  # type: ignore[union-attr]
    assert audit(queue)[0] == ("ops", "bulk retry (filter)", [bulk_id], f"tracked as job {bulk_id}")


def test_schedules_page_pause_resume_and_run_now(client: TestClient, queue: JobQueue) -> None:
    """A runtime schedule is listed with its cron; pause, resume and run now act on it and are audited."""
    queue.schedule(Mail, cron="*/5 * * * *", key="mail-5m", args={"to": "a@b.c"})
    page = client.get("/schedules").text
    assert 'data-schedule="mail-5m"' in page and "*/5 * * * *" in page
    post(client, "/schedules/pause", {"key": "mail-5m", "next": "/schedules"})
    paused = lambda: {s["key"]: s["paused"] for s in queue.schedules()}["mail-5m"]  # noqa: E731
    assert paused() is True
    post(client, "/schedules/resume", {"key": "mail-5m"})
    assert paused() is False
    fired = post(client, "/schedules/run", {"key": "mail-5m"})
    assert fired.status_code == 303
    [job] = queue.jobs(name="dash.mail")
    assert job.args["to"] == "a@b.c"
    assert [a[1] for a in audit(queue)] == ["schedule run", "schedule resume", "schedule pause"]
    assert post(client, "/schedules/run", {"key": "nope"}).status_code == 404

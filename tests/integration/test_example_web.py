"""example_app.web: the newsletter site with jobkit's dashboard mounted at /jobs."""

from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

from example_app.web import build
from jobkit import JobQueue


def test_example_site_mounts_the_dashboard(queue: JobQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The site's own page answers, and /jobs/ is the dashboard, closed until credentials are set."""
    monkeypatch.delenv("JOBKIT_DASHBOARD_READ_ONLY", raising=False)
    monkeypatch.delenv("JOBKIT_DASHBOARD_USER", raising=False)
    monkeypatch.delenv("JOBKIT_DASHBOARD_PASSWORD", raising=False)
    with TestClient(build(queue)) as client:
        assert client.get("/").status_code == 200
        assert client.get("/jobs/").status_code == 403
    monkeypatch.setenv("JOBKIT_DASHBOARD_USER", "ops")
    monkeypatch.setenv("JOBKIT_DASHBOARD_PASSWORD", "pw")
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
    with TestClient(build(queue), headers=auth) as client:
        page = client.get("/jobs/jobs")
        assert page.status_code == 200
        assert "newsletter.send_welcome" in page.text

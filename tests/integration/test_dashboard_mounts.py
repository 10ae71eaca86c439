"""The dashboard mounted in FastAPI and in front of Django, as docs/dashboard.md shows, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import jobkit.dashboard
from jobkit import JobQueue
from tests.dashboard_jobs import Mail

AUTH = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}


def django_home(request: HttpRequest) -> HttpResponse:
    """The Django side of the site."""
    return HttpResponse("django here")


urlpatterns = [path("", django_home)]


def check_mounted(client: TestClient, prefix: str, queue: JobQueue) -> None:
    """Pages, links, static files, actions and redirects all live under ``prefix``."""
    handle = Mail.perform_later(to="a@b.c")
    page = client.get(f"{prefix}/jobs")
    assert page.status_code == 200
    assert f'href="{prefix}/jobs/{handle.id}"' in page.text
    assert client.get(f"{prefix}/static/dashboard.css").status_code == 200
    done = client.post(
        f"{prefix}/jobs/{handle.id}/cancel",
        data={"csrf": client.cookies["jobkit_csrf"], "next": f"{prefix}/jobs"},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, f"{prefix}/jobs")
    assert queue.job_info(handle.id).status == "cancelled"  # type: ignore[union-attr]


def test_mounted_in_fastapi(queue: JobQueue) -> None:
    """api.mount("/admin/jobs", dashboard) serves the whole dashboard under the prefix."""
    api = FastAPI()
    api.mount("/admin/jobs", jobkit.dashboard.app(queue, user="u", password="p"))

    @api.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    with TestClient(api, headers=AUTH) as client:
        assert client.get("/hello").json() == {"hello": "world"}
        check_mounted(client, "/admin/jobs", queue)


def test_mounted_in_front_of_django(queue: JobQueue) -> None:
    """A Starlette router sends /admin/jobs to the dashboard and everything else to Django."""
    if not settings.configured:
        settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], DEBUG=False)
        django.setup()
    site = Starlette(
        routes=[
            Mount("/admin/jobs", app=jobkit.dashboard.app(queue, user="u", password="p")),
            Mount("/", app=get_asgi_application()),
        ]
    )
    with TestClient(site, headers=AUTH) as client:
        if __name__ == settings.ROOT_URLCONF:  # another test may have configured Django first
            assert client.get("/").text == "django here"
        check_mounted(client, "/admin/jobs", queue)

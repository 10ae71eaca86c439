"""The newsletter's web side: its own pages and jobkit's dashboard mounted at /jobs.

Run it with ``JOBKIT_DASHBOARD_USER=ops JOBKIT_DASHBOARD_PASSWORD=... uvicorn --factory example_app.web:build``
(needs ``jobkit[dashboard]``); the dashboard stays closed until credentials are set.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import example_app.jobs  # noqa: F401  (registers the job types: the dashboard lists them and builds their forms)
import jobkit.dashboard
from jobkit import JobQueue


async def home(request: Request) -> PlainTextResponse:
    """The newsletter's front page."""
    return PlainTextResponse("The example newsletter. Operators: /jobs/\n")


def build(queue: JobQueue | None = None) -> Starlette:
    """The site over ``queue`` (default: the process-wide queue from JOBKIT_* settings)."""
    return Starlette(routes=[Route("/", home), Mount("/jobs", app=jobkit.dashboard.app(queue))])

"""What every view shares: the dashboard's state, rendering, redirects, the request's role and actor.

Templates are Jinja2 with autoescape on for every template, and undefined names fail loudly
rather than render empty.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobkit._queue import JobQueue
from jobkit._vocabulary import JobState
from jobkit.dashboard import present
from jobkit.dashboard.live import Hub
from jobkit.dashboard.security import ADMIN, CSRF_FIELD

HERE = Path(__file__).parent

#: The pages in the navigation bar, in order: (path, title).
NAV = (
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/running", "Running"),
    ("/queues", "Queues"),
    ("/workers", "Workers"),
    ("/schedules", "Schedules"),
    ("/enqueue", "Enqueue"),
    ("/audit", "Audit log"),
)


@dataclass
class Dashboard:
    """What every view shares: the queue, the templates, what to mask, the live hub."""

    queue: JobQueue
    env: jinja2.Environment
    hub: Hub
    redact: frozenset[str] = field(default_factory=frozenset)
    title: str = "jobkit"

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """The page ``template`` with ``context`` and what every page needs (role, CSRF token, links)."""
        base = request.scope.get("root_path", "").rstrip("/")
        shared: dict[str, Any] = {"now": time.time()}
        page = self.env.get_template(template).render(
            **{**shared, **context},
            base=base,
            nav=NAV,
            here=request.url.path[len(base) :] or "/",
            current=_current(request),
            can_act=role(request) == ADMIN,
            role=role(request),
            csrf=request.scope.get("jobkit.csrf", ""),
            csrf_field=CSRF_FIELD,
            title=self.title,
        )
        return HTMLResponse(page, status_code=status)

    def redirect(self, request: Request, target: object) -> Response:
        """303 to ``target`` when it is a path inside this dashboard, else to its overview."""
        return RedirectResponse(local_path(request, target), status_code=303)


def local_path(request: Request, target: object) -> str:
    """``target`` when it is a path inside this dashboard, else the dashboard's overview."""
    base = str(request.scope.get("root_path", "")).rstrip("/")
    text = target if isinstance(target, str) else ""
    # Only local paths: never a way to another site (``//host``, ``/\\host``, schemes, header breaks).
    if not text.startswith(base + "/") or text.startswith("//") or any(c in text for c in "\\\r\n"):
        return base + "/"
    return text


def text_param(params: Mapping[str, Any], key: str) -> str | None:
    """A query or form field's text, stripped; None when absent or empty."""
    value = params.get(key, "")
    return (value.strip() or None) if isinstance(value, str) else None


def epoch_param(params: Mapping[str, Any], key: str) -> float | None:
    """A ``datetime-local`` input's value, read as UTC."""
    value = text_param(params, key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{key}: not a date and time ({value!r})") from None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return float(aware.timestamp())


def int_param(params: Mapping[str, Any], key: str) -> int | None:
    """A field's whole number (None when absent); anything else is a 400."""
    value = text_param(params, key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise HTTPException(400, f"{key}: not a number ({value!r})") from None


#: The job list's filter fields, as its form and links name them.
FILTER_FIELDS = ("type", "queue", "stage", "worker", "q", "since", "until")


def job_filters(params: ImmutableMultiDict[str, Any]) -> dict[str, Any]:
    """The ``Store.page_jobs`` filters a job list's query (or a bulk form repeating it) names."""
    states = [s for s in params.getlist("state") if isinstance(s, str) and s]
    unknown = [s for s in states if s not in {state.value for state in JobState}]
    if unknown:
        raise HTTPException(400, f"unknown state {unknown[0]!r}")
    return {
        "states": states or None,
        "name": text_param(params, "type"),
        "queue": text_param(params, "queue"),
        "stage": text_param(params, "stage"),
        "worker": text_param(params, "worker"),
        "text": text_param(params, "q"),
        "since": epoch_param(params, "since"),
        "until": epoch_param(params, "until"),
    }


def _current(request: Request) -> str:
    """The request's path and query, as a form's ``next`` field names it."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def role(request: Request) -> str:
    """The role the guard admitted this request with."""
    return str(request.scope.get("jobkit.role", ""))


def actor(request: Request) -> str:
    """Who this request is, as the audit log names them."""
    return str(request.scope.get("jobkit.actor", "")) or "operator"


def dashboard_of(request: Request) -> Dashboard:
    """The dashboard state of the application serving this request."""
    state: Dashboard = request.app.state.dashboard
    return state


def environment() -> jinja2.Environment:
    """The templates: autoescape on for everything, undefined names an error."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = present.pretty
    env.filters["age"] = present.age
    env.filters["when"] = present.when
    return env

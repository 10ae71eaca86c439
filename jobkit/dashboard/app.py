"""The dashboard's ASGI application: :func:`app` wires the pages, the actions, the stream and the guard.

The pages live in pages.py, the actions in actions.py, what they share in views.py, access in
security.py, live updates in live.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobkit._bulk import register_bulk
from jobkit._queue import JobQueue
from jobkit.dashboard import actions, pages
from jobkit.dashboard.live import Hub
from jobkit.dashboard.security import Access, AuthCallable, Guard
from jobkit.dashboard.views import HERE, Dashboard, dashboard_of, environment


async def events(request: Request) -> Response:
    """``GET /live``: the server-sent event stream of changes."""
    hub = dashboard_of(request).hub
    return StreamingResponse(
        hub.stream(request.is_disconnected),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )


def stop_streams(web: Starlette) -> None:
    """End the open event streams of a dashboard made by :func:`app` (call it when the server begins to stop).

    A server waits for open requests before it stops, and an event stream never ends on its
    own; ``jobkit dashboard`` calls this on SIGINT and SIGTERM.
    """
    dashboard: Dashboard = web.state.dashboard
    dashboard.hub.shutdown()


def app(
    queue: JobQueue | None = None,
    *,
    auth: AuthCallable | None = None,
    read_only: bool | None = None,
    redact: Collection[str] = (),
    title: str = "jobkit",
    user: str | None = None,
    password: str | None = None,
) -> Starlette:
    """The dashboard as an ASGI application over ``queue`` (default: the process-wide queue).

    Closed until access is configured: ``auth`` (a callable given the request, returning
    ``"admin"``, ``"read_only"`` or None; it may be async), or HTTP basic credentials
    (``user``/``password``, default ``JOBKIT_DASHBOARD_USER``/``JOBKIT_DASHBOARD_PASSWORD``), or
    ``read_only`` (default ``JOBKIT_DASHBOARD_READ_ONLY``), which also caps every other role.
    ``redact``: argument names masked on every page, besides the schemas' ``SecretStr`` fields.

    Example::

        from starlette.applications import Starlette
        from starlette.routing import Mount
        import jobkit.dashboard

        web = Starlette(routes=[Mount("/jobs", app=jobkit.dashboard.app(queue, auth=staff_only))])
    """
    register_bulk()  # "everything matching the filter" is enqueued as a jobkit.bulk job
    the_queue = queue if queue is not None else JobQueue.instance()
    access = Access.configure(auth, read_only=read_only, user=user, password=password)
    state = Dashboard(the_queue, environment(), Hub(the_queue), frozenset(redact), title)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[Mapping[str, Any]]:
        try:
            yield {}
        finally:
            state.hub.close()

    routes = [
        *pages.routes,
        *actions.routes,
        Route("/live", events),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(routes=routes, lifespan=lifespan)
    web.state.dashboard = state
    web.add_middleware(Guard, access=access)
    return web

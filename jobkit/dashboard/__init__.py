"""jobkit's web dashboard: see and operate every job, queue and worker from a browser.

Install it with ``pip install jobkit[dashboard]``, then serve it standalone with
``jobkit dashboard --database-url URL --app myapp.jobs``, or mount :func:`app` in any ASGI
application (Starlette, FastAPI, Django's ASGI handler). It is closed until access is configured:
HTTP basic credentials, read-only mode, or an ``auth`` callable.

Example::

    import jobkit, jobkit.dashboard

    queue = jobkit.configure(database_url="postgresql+psycopg://localhost/app")
    web = jobkit.dashboard.app(queue, auth=lambda request: "admin" if is_staff(request) else None)
"""

from __future__ import annotations

from jobkit.dashboard.app import app, stop_streams
from jobkit.dashboard.security import AuthCallable, Role

__all__ = ["AuthCallable", "Role", "app", "stop_streams"]

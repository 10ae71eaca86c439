"""The actions: every change the dashboard makes, each a POST with a CSRF token, by an admin, audited.

Destructive and bulk actions first answer with a confirmation page (a form that posts the same
fields again with ``confirmed``), so nothing is deleted or ended by one stray click, with or
without JavaScript. Each action goes through the queue facade, exactly as the CLI's do, and
leaves one row in the audit log: who, what, when, which jobs, and what came of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobkit._bulk import BULK_JOB, bulk_args
from jobkit._payload import ValidationError
from jobkit._queue import JobQueue
from jobkit._registry import lookup
from jobkit.dashboard.forms import FormError, arguments, form_fields
from jobkit.dashboard.security import ADMIN, CSRF_COOKIE, CSRF_FIELD, csrf_ok
from jobkit.dashboard.views import Dashboard, actor, dashboard_of, job_filters, local_path, role
from jobkit.errors import EnqueueError

#: Most jobs one bulk action takes from a selection (a page holds 50).
MAX_SELECTION = 1000


@dataclass(frozen=True, slots=True)
class JobAction:
    """One action on one job: what it calls, and whether it needs a confirmation."""

    title: str
    run: Callable[[JobQueue, int], object]
    destructive: bool = False


JOB_ACTIONS: dict[str, JobAction] = {
    "retry": JobAction("Retry", lambda q, i: q.retry_job(i)),
    "cancel": JobAction("Cancel", lambda q, i: q.cancel_job(i)),
    "pause": JobAction("Pause", lambda q, i: q.pause_job(i)),
    "resume": JobAction("Resume", lambda q, i: q.resume_job(i)),
    "kill": JobAction("Kill", lambda q, i: q.kill_job(i), destructive=True),
    "discard": JobAction("Discard (force-fail)", lambda q, i: q.discard_job(i), destructive=True),
    "delete": JobAction("Delete", lambda q, i: q.delete_job(i), destructive=True),
}


def _outcome(value: object) -> str:
    if value is True:
        return "done"
    if value is False or value is None:
        return "not applicable"
    return str(value)


async def _admin_form(request: Request) -> FormData:
    """The POST's form, once it is known to come from an admin with the right CSRF token."""
    if role(request) != ADMIN:
        raise HTTPException(403, "read-only access: actions are not allowed")
    # Defence in depth besides the token: a browser that says the form came from another site is refused.
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site form posts are refused")
    form = await request.form()
    if not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page and try again")
    return form


def _confirm(dash: Dashboard, request: Request, form: FormData, question: str, items: list[str]) -> Response:
    fields = [(k, v) for k, v in form.multi_items() if k not in (CSRF_FIELD, "confirmed") and isinstance(v, str)]
    return dash.render(
        request,
        "confirm.html",
        question=question,
        items=items,
        fields=fields,
        action=request.url.path,
        back=local_path(request, form.get("next")),
    )


def _audit(dash: Dashboard, request: Request, action: str, target: str, job_ids: list[int], outcome: str) -> None:
    dash.queue.store.record_audit(
        actor=actor(request), action=action, target=target, job_ids=job_ids, outcome=outcome, now=time.time()
    )


async def job_action(request: Request) -> Response:
    """``POST /jobs/{id}/{action}``: one action on one job."""
    dash = dashboard_of(request)
    form = await _admin_form(request)
    job_id: int = request.path_params["job_id"]
    action = JOB_ACTIONS.get(request.path_params["action"])
    if action is None:
        raise HTTPException(404, "no such action")
    if action.destructive and form.get("confirmed") != "yes":
        return _confirm(dash, request, form, f"{action.title} job {job_id}?", [])
    outcome = _outcome(action.run(dash.queue, job_id))
    _audit(dash, request, request.path_params["action"], "", [job_id], outcome)
    return dash.redirect(request, form.get("next") or f"{request.scope.get('root_path', '').rstrip('/')}/jobs/{job_id}")


async def bulk_action(request: Request) -> Response:
    """``POST /jobs/bulk``: one action on every selected job (always confirmed first)."""
    dash = dashboard_of(request)
    form = await _admin_form(request)
    name = str(form.get("action") or "")
    action = JOB_ACTIONS.get(name)
    if action is None:
        raise HTTPException(400, "choose an action")
    if form.get("scope") == "filter":
        return _bulk_over_filter(dash, request, form, name, action)
    try:
        ids = sorted({int(str(value)) for value in form.getlist("ids")})
    except ValueError:
        raise HTTPException(400, "job ids must be numbers") from None
    if not ids:
        raise HTTPException(400, "select at least one job")
    if len(ids) > MAX_SELECTION:
        raise HTTPException(400, f"at most {MAX_SELECTION} jobs at once")
    if form.get("confirmed") != "yes":
        return _confirm(dash, request, form, f"{action.title} {len(ids)} jobs?", [f"job {i}" for i in ids])
    outcomes: dict[str, int] = {}
    for job_id in ids:
        outcome = _outcome(action.run(dash.queue, job_id))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
    _audit(dash, request, f"bulk {name}", "", ids, summary)
    return dash.redirect(request, form.get("next"))


def _bulk_over_filter(dash: Dashboard, request: Request, form: FormData, name: str, action: JobAction) -> Response:
    """Every job matching the form's filter, by a tracked ``jobkit.bulk`` job that a worker runs."""
    filters = job_filters(form)
    args = bulk_args(name, filters)
    shown = ", ".join(f"{k}={v}" for k, v in args["filters"].items()) or "no filter: every job"
    if form.get("confirmed") != "yes":
        question = f"{action.title} every job matching {shown}?"
        return _confirm(dash, request, form, question, ["Runs on a worker as a job you can watch and cancel."])
    handle = dash.queue.enqueue(BULK_JOB, args)
    _audit(dash, request, f"bulk {name} (filter)", shown, [handle.id], f"tracked as job {handle.id}")
    return dash.redirect(request, f"{str(request.scope.get('root_path', '')).rstrip('/')}/jobs/{handle.id}")


async def queue_action(request: Request) -> Response:
    """``POST /queues/pause`` and ``/queues/resume``: stop or restart claims from one queue."""
    dash = dashboard_of(request)
    form = await _admin_form(request)
    name = str(form.get("queue") or "")
    verb = request.path_params["verb"]
    if verb not in ("pause", "resume"):
        raise HTTPException(404, "no such action")
    try:
        if verb == "pause":
            dash.queue.pause_queue(name)
            outcome = "paused"
        else:
            outcome = "resumed" if dash.queue.resume_queue(name) else "was not paused"
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    _audit(dash, request, f"queue {verb}", name, [], outcome)
    return dash.redirect(request, form.get("next"))


async def schedule_action(request: Request) -> Response:
    """``POST /schedules/pause``, ``/resume`` and ``/run``: stop or restart a schedule, or fire it now."""
    dash = dashboard_of(request)
    form = await _admin_form(request)
    key = str(form.get("key") or "")
    verb = request.path_params["verb"]
    job_ids: list[int] = []
    if verb == "run":
        try:
            handle = dash.queue.run_schedule(key)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        job_ids, outcome = [handle.id], f"fired as job {handle.id}"
    elif verb in ("pause", "resume"):
        found = dash.queue.pause_schedule(key) if verb == "pause" else dash.queue.resume_schedule(key)
        if not found:
            raise HTTPException(404, f"no schedule with key {key!r}")
        outcome = "paused" if verb == "pause" else "resumed"
    else:
        raise HTTPException(404, "no such action")
    _audit(dash, request, f"schedule {verb}", key, job_ids, outcome)
    return dash.redirect(request, form.get("next"))


async def clear(request: Request) -> Response:
    """``POST /clear``: delete completed or failed jobs finished more than some hours ago (confirmed first)."""
    dash = dashboard_of(request)
    form = await _admin_form(request)
    state = str(form.get("state") or "")
    if state not in ("completed", "failed"):
        raise HTTPException(400, "only completed or failed jobs can be cleared")
    try:
        hours = float(str(form.get("older_than_hours") or "0"))
    except ValueError:
        raise HTTPException(400, "older than: a number of hours") from None
    if not 0 <= hours < 1e6:
        raise HTTPException(400, "older than: a number of hours, 0 or more")
    target = f"{state} older than {hours:g}h"
    if form.get("confirmed") != "yes":
        return _confirm(dash, request, form, f"Delete every {target}?", [])
    clear_jobs = dash.queue.clear_completed if state == "completed" else dash.queue.clear_failed
    count = clear_jobs(older_than=hours * 3600)
    _audit(dash, request, "clear", target, [], f"{count} deleted")
    return dash.redirect(request, form.get("next"))


async def enqueue(request: Request) -> Response:
    """``POST /enqueue/{name}``: validate as ``perform_later`` does, enqueue, show the new job."""
    dash = dashboard_of(request)
    form = await _admin_form(request)
    job_type = lookup(request.path_params["name"])
    if job_type is None:
        raise HTTPException(404, "no such job type is registered in this process")
    fields = form_fields(job_type)
    call: dict[str, Any] = {}
    error = None
    try:
        args = arguments(fields, form)
        if form.get("queue"):
            call["queue"] = str(form.get("queue"))
        if form.get("priority"):
            try:
                call["priority"] = int(str(form.get("priority")))
            except ValueError:
                raise FormError("priority: a whole number") from None
        handle = dash.queue.enqueue(job_type.name, args, **call)
    except (FormError, EnqueueError, ValidationError) as exc:
        # The very message perform_later raises with: the schema's own words.
        error = str(exc)
    if error is not None:
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
        return dash.render(
            request, "enqueue.html", status=422, job_type=job_type, fields=fields, values=values, error=error
        )
    _audit(dash, request, "enqueue", job_type.name, [handle.id], "pending")
    return dash.redirect(request, f"{request.scope.get('root_path', '').rstrip('/')}/jobs/{handle.id}")


routes = [
    Route("/jobs/{job_id:int}/{action}", job_action, methods=["POST"]),
    Route("/jobs/bulk", bulk_action, methods=["POST"]),
    Route("/queues/{verb:str}", queue_action, methods=["POST"]),
    Route("/schedules/{verb:str}", schedule_action, methods=["POST"]),
    Route("/clear", clear, methods=["POST"]),
    Route("/enqueue/{name:path}", enqueue, methods=["POST"]),
]

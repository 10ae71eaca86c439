"""The pages: overview, jobs, one job, running now, queues, workers, enqueue forms, the audit log.

Every page is a GET that reads and never writes. Listings read the store's keyset pages, so a
page costs the same with a million rows as with a thousand; counts come from the store's
grouped counts and the per-minute table, never a count over the jobs table per request.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobkit._registry import all_types, lookup
from jobkit._snapshots import info_of
from jobkit._vocabulary import JobState
from jobkit.dashboard import present
from jobkit.dashboard.forms import form_fields
from jobkit.dashboard.views import FILTER_FIELDS, dashboard_of, int_param, job_filters, text_param

PAGE_SIZE = 50
#: Columns the rows of a jobs page can be sorted by: (key, title).
SORTS = {"id": "id", "name": "type", "status": "state", "queue": "queue", "attempt": "attempt"}


async def overview(request: Request) -> Response:
    """Counts by state and queue, workers alive, oldest ready job per queue, throughput charts."""
    dash = dashboard_of(request)
    queue = dash.queue
    stats = queue.stats()
    workers = queue.workers()
    now = time.time()
    counts = queue.store.minute_counts(since=now - 86_400)
    this_minute = int(now // 60 * 60)
    hour = present.bars(counts, start=this_minute - 59 * 60, step=60, slots=60)
    this_hour = int(now // 3600 * 3600)
    day = present.bars(counts, start=this_hour - 23 * 3600, step=3600, slots=24)
    done = sum(b.completed for b in hour)
    failed = sum(b.failed for b in hour)
    return dash.render(
        request,
        "overview.html",
        stats=stats,
        states=[s.value for s in JobState],
        queues=sorted(stats["by_queue"]),
        paused=set(queue.paused_queues()),
        alive=[w for w in workers if w.alive],
        hour=hour,
        day=day,
        hour_completed=done,
        hour_failed=failed,
        failure_rate=None if done + failed == 0 else failed / (done + failed),
    )


async def jobs(request: Request) -> Response:
    """The filtered, keyset-paginated job list, every registered type listed with its counts."""
    dash = dashboard_of(request)
    queue = dash.queue
    filters = job_filters(request.query_params)
    states = filters["states"] or []
    before = int_param(request.query_params, "before")
    page = queue.store.page_jobs(**filters, before=before, limit=PAGE_SIZE)
    rows = [info_of(record) for record in page.items]
    sort = request.query_params.get("sort", "id")
    if sort not in SORTS:
        sort = "id"
    descending = request.query_params.get("dir", "desc") != "asc"
    # Each sortable column holds one type (ints or text), so the page's rows compare directly.
    rows.sort(key=lambda info: getattr(info, sort), reverse=descending)
    stats = queue.stats()
    types = sorted(set(all_types()) | set(stats["by_type"]))
    queues = sorted(set(stats["by_queue"]) | {t.options.queue for t in all_types().values()})
    args = [(key, value) for key, value in request.query_params.multi_items() if key != "before"]
    return dash.render(
        request,
        "jobs.html",
        rows=[(info, present.Progress.of(info.progress)) for info in rows],
        next_cursor=page.next_cursor,
        states=[s.value for s in JobState],
        chosen_states=set(states),
        types=types,
        by_type=stats["by_type"],
        queues=queues,
        query={k: text_param(request.query_params, k) or "" for k in FILTER_FIELDS},
        args=args,
        sorts=SORTS,
        sort=sort,
        descending=descending,
    )


async def job_detail(request: Request) -> Response:
    """One job: arguments (secrets masked), state, progress, checkpoint, attempts, lease, result."""
    dash = dashboard_of(request)
    queue = dash.queue
    job_id = request.path_params["job_id"]
    info = queue.job_info(job_id)
    if info is None:
        raise HTTPException(404, f"no job {job_id}")
    holder = None
    heartbeat_age = None
    if info.worker_id:
        holder = next((w for w in queue.workers() if w.id == info.worker_id), None)
        if holder is not None:
            heartbeat_age = queue.store.now() - holder.heartbeat_at
    record = queue.store.get(job_id)
    why = queue.job_why(job_id) if info.status in (JobState.PENDING, JobState.PAUSED) else None
    return dash.render(
        request,
        "job.html",
        job=info,
        args=present.masked_args(info, dash.redact),
        progress=present.Progress.of(info.progress),
        stages=(info.progress or {}).get("stages") or [],
        checkpoint=present.checkpoint_view(info.checkpoint),
        attempts=present.attempts(info.errors),
        holder=holder,
        lease=None if record is None else record.lease,
        heartbeat_age=heartbeat_age,
        registered=lookup(info.name) is not None,
        why=why,
    )


async def running(request: Request) -> Response:
    """Every running job across all workers, with its progress bar."""
    dash = dashboard_of(request)
    # Not a filtered page: that examines a window of the newest ids, and a job running for
    # hours may sit below it. The running index holds every running job.
    rows = [info_of(record) for record in dash.queue.store.running(limit=500)]
    return dash.render(
        request, "running.html", rows=[(info, present.Progress.of(info.progress)) for info in rows], now=time.time()
    )


async def queues(request: Request) -> Response:
    """Each queue: depth, running, paused, the age of its oldest ready job, finished in the last hour."""
    dash = dashboard_of(request)
    queue = dash.queue
    stats = queue.stats()
    paused = set(queue.paused_queues())
    names = sorted(set(stats["by_queue"]) | paused | {t.options.queue for t in all_types().values()})
    counts = queue.store.minute_counts(since=time.time() - 3600)
    rate = {name: sum(c.completed + c.failed for c in counts if c.queue == name) for name in names}
    rows = [
        {
            "name": name,
            "pending": stats["by_queue"].get(name, {}).get(JobState.PENDING, 0),
            "running": stats["by_queue"].get(name, {}).get(JobState.RUNNING, 0),
            "failed": stats["by_queue"].get(name, {}).get(JobState.FAILED, 0),
            "paused": name in paused,
            "oldest": stats["oldest_pending_age_by_queue"].get(name),
            "rate": rate[name],
        }
        for name in names
    ]
    return dash.render(request, "queues.html", rows=rows)


async def workers(request: Request) -> Response:
    """Every registered worker: host, pid, queues, concurrency, heartbeat age, jobs held."""
    dash = dashboard_of(request)
    found = dash.queue.workers()
    now = dash.queue.store.now()
    rows = [(w, now - w.heartbeat_at, _json_or_none(w.queues), _pool_of(w.pool)) for w in found]
    return dash.render(request, "workers.html", rows=rows)


def _json_or_none(text: str | None) -> Any:
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def _pool_of(text: str | None) -> str:
    """The worker's pool as the heartbeat reported it: "threads", or "processes (3 children)"."""
    found = _json_or_none(text)
    if not isinstance(found, dict):
        return "threads"
    children = found.get("children")
    count = f" ({len(children)} children)" if isinstance(children, list) and children else ""
    return f"{found.get('pool', 'threads')}{count}"


async def enqueue_index(request: Request) -> Response:
    """The registered job types, each linking to its form."""
    dash = dashboard_of(request)
    return dash.render(request, "enqueue_index.html", types=sorted(all_types().values(), key=lambda t: t.name))


async def enqueue_form(request: Request) -> Response:
    """The form built from one job type's schema."""
    dash = dashboard_of(request)
    job_type = lookup(request.path_params["name"])
    if job_type is None:
        raise HTTPException(404, "no such job type is registered in this process")
    return dash.render(request, "enqueue.html", job_type=job_type, fields=form_fields(job_type), values={}, error=None)


async def schedules(request: Request) -> Response:
    """Every stored schedule: its cron, next and last fire, last job, missed fires, paused or not."""
    dash = dashboard_of(request)
    return dash.render(request, "schedules.html", rows=dash.queue.schedules())


async def audit(request: Request) -> Response:
    """The operators' actions, newest first."""
    dash = dashboard_of(request)
    before = int_param(request.query_params, "before")
    entries = dash.queue.store.audit_log(before=before, limit=100)
    rows = [(entry, json.loads(entry.job_ids)) for entry in entries]
    return dash.render(request, "audit.html", rows=rows, next_cursor=entries[-1].id if len(entries) == 100 else None)


routes = [
    Route("/", overview),
    Route("/jobs", jobs),
    Route("/jobs/{job_id:int}", job_detail),
    Route("/running", running),
    Route("/queues", queues),
    Route("/workers", workers),
    Route("/enqueue", enqueue_index),
    Route("/enqueue/{name:path}", enqueue_form, methods=["GET"]),
    Route("/schedules", schedules),
    Route("/audit", audit),
]

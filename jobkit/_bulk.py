"""The bulk action over a filter: one tracked job that walks every matching job and acts on each.

"Retry all 200,000 failed" must not run inside a web request: the dashboard enqueues a
``jobkit.bulk`` job instead, which a worker runs like any other. It walks the store's keyset
pages newest first (each page a bounded window of the primary key), acts through the queue
facade exactly as a single action does, reports progress as the share of the id range walked,
and stops between pages when cancelled. :func:`register_bulk` registers it: ``jobkit worker``
and the dashboard call it, and nothing else does, so other processes' type and queue listings
do not show it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobkit._job import BaseJob, job
from jobkit._queue import JobQueue
from jobkit.errors import Discard

#: The stable name of the bulk job type.
BULK_JOB = "jobkit.bulk"
#: Jobs one page of the walk acts on.
BULK_PAGE = 500

#: What the bulk job can do to each job it walks, by the action's name.
BULK_ACTIONS: dict[str, Callable[[JobQueue, int], object]] = {
    "retry": lambda q, i: q.retry_job(i),
    "cancel": lambda q, i: q.cancel_job(i),
    "pause": lambda q, i: q.pause_job(i),
    "resume": lambda q, i: q.resume_job(i),
    "kill": lambda q, i: q.kill_job(i),
    "discard": lambda q, i: q.discard_job(i),
    "delete": lambda q, i: q.delete_job(i),
}
#: The filters of ``Store.page_jobs`` a bulk job may carry.
FILTERS = ("states", "name", "queue", "stage", "worker", "text", "since", "until")


def bulk_args(action: str, filters: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a bulk job, checked: a known action and known filters only."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}")
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise ValueError(f"unknown bulk filters {sorted(unknown)}")
    return {"action": action, "filters": {k: v for k, v in filters.items() if v not in (None, "", [])}}


def _outcome(value: object) -> str:
    if value is True:
        return "done"
    if value is False or value is None:
        return "not applicable"
    return str(value)


class BulkAction(BaseJob[dict[str, Any]]):
    """Act on every job matching a filter, page by page; the result counts what came of each."""

    def perform(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            checked = bulk_args(str(args.get("action")), dict(args.get("filters") or {}))
        except ValueError as exc:
            raise Discard(str(exc)) from None
        act = BULK_ACTIONS[checked["action"]]
        filters = checked["filters"]
        queue = JobQueue.instance()
        own = self.job_id
        outcomes: dict[str, int] = {}
        cursor: int | None = None
        top: int | None = None
        seen = 0
        while True:
            self.cancel_token.raise_if_cancelled()
            page = queue.store.page_jobs(**filters, before=cursor, limit=BULK_PAGE)
            for record in page.items:
                if record.id == own:
                    continue  # never act on itself (a filter on running jobs would match it)
                outcome = _outcome(act(queue, record.id))
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                seen += 1
            if page.next_cursor is None:
                break
            if top is None:
                top = max([r.id for r in page.items] + [page.next_cursor])
            cursor = page.next_cursor
            walked = 100.0 * (top - cursor) / top if top else 0.0
            self.progress(min(99.0, walked), stage=checked["action"], message=f"{seen} jobs so far", seen=seen)
        self.progress(100, stage=checked["action"], message=f"{seen} jobs", seen=seen)
        return {"action": checked["action"], "jobs": seen, "outcomes": outcomes}


def register_bulk() -> None:
    """Register the ``jobkit.bulk`` job type in this process (again is harmless: the same origin replaces it)."""
    job(name=BULK_JOB, max_retries=0, queue="default")(BulkAction)

"""Reads: one job, listings, the filtered and paginated job pages, the next run time, counts.

Pages are keyset-paginated over ``id``, newest first: a cursor is the lowest id a page
examined, and the next page starts below it, so walking the cursor visits every row once
however the table changes meanwhile. A filtered page examines at most ``scan`` rows (one
range of the primary key), so it costs the same with a million rows in the table as with a
thousand: no index beyond the primary key, and nothing added to the hot path's writes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa

from jobkit._store.engine import BRIEF, PATIENT, READ, Database, transaction
from jobkit._store.records import JobPage, JobRecord, QueueGauge, job_record
from jobkit._store.statements import where
from jobkit._vocabulary import JobState

#: Rows a filtered page examines at most (one primary-key range).
PAGE_SCAN = 20_000


def like_pattern(fragment: str) -> str:
    """A LIKE pattern matching ``fragment`` anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _in_stage(record: JobRecord, stage: str) -> bool:
    """Whether a job's stored progress names ``stage`` as its current stage (damaged progress: no)."""
    try:
        progress = json.loads(record.progress or "null")
    except (ValueError, RecursionError):
        return False
    return isinstance(progress, dict) and progress.get("stage") == stage


class Queries(Database):
    """Every read of jobs: by id, listings, pages, the next due time and counts."""

    @transaction(READ, retry=PATIENT)
    def get(self, conn: sa.Connection, job_id: int) -> JobRecord | None:
        """One job's full row, or None."""
        found = conn.execute(self.dialect.get_job, {"id": job_id}).first()
        return None if found is None else job_record(found)

    @transaction(READ, retry=PATIENT)
    def status_of(self, conn: sa.Connection, job_id: int) -> str | None:
        """Just the status column (cheap polling for result waits)."""
        value = conn.execute(self.dialect.status_of, {"id": job_id}).scalar()
        return None if value is None else str(value)

    @transaction(READ, retry=PATIENT)
    def list_jobs(
        self,
        conn: sa.Connection,
        *,
        status: str | None = None,
        name: str | None = None,
        queue: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs filtered by status, type and queue, newest first."""
        clause, params = where(status=status, name=name, queue=queue)
        return [job_record(r) for r in conn.execute(self.dialect.list_jobs(clause), {**params, "limit": limit})]

    @transaction(READ, retry=PATIENT)
    def page_jobs(
        self,
        conn: sa.Connection,
        *,
        states: Collection[str] | None = None,
        name: str | None = None,
        queue: str | None = None,
        stage: str | None = None,
        text: str | None = None,
        worker: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        limit: int = 50,
        scan: int = PAGE_SCAN,
    ) -> JobPage:
        """One page of jobs, newest first, below the cursor ``before``; every filter given must hold.

        ``states``: any of these; ``stage``: the progress's current stage, exactly; ``text``: a
        substring of the name, arguments or error history, ignoring case, taken literally
        (``%`` and ``_`` are not wildcards); ``worker``: the worker that holds or last held it;
        ``since`` / ``until``: created at or after / before these epoch seconds. A filtered page
        examines at most ``scan`` rows.
        """
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        given: dict[str, Any] = {
            "states": None if states is None else sorted({JobState(state).value for state in states}),
            "name": name,
            "queue": queue,
            # Stored progress names its stage as '"stage":' and the stage as JSON, compactly.
            "stage": None if stage is None else like_pattern('"stage":' + json.dumps(stage, ensure_ascii=False)),
            "text": None if text is None else like_pattern(text),
            "worker": worker,
            "since": since,
            "until": until,
        }
        filters = [key for key, value in given.items() if value is not None]
        params = {**{key: given[key] for key in filters}, "before": before, "limit": limit + 1}
        floor, full = None, False
        if filters:
            # The window this page examines: at most ``scan`` ids below the cursor.
            low, count = conn.execute(
                self.dialect.page_window[before is not None], {"before": before, "scan": scan}
            ).one()
            if not count:
                return JobPage([], None)
            floor, full = int(low), int(count) >= scan
            params["floor"] = floor
        statement = self.dialect.page_jobs(filters, below=before is not None, windowed=bool(filters))
        rows = [job_record(r) for r in conn.execute(statement, params)]
        consumed = rows[:limit]
        if len(rows) > limit:
            cursor: int | None = consumed[-1].id
        else:
            cursor = floor if full else None
        if stage is not None:
            consumed = [record for record in consumed if _in_stage(record, stage)]
        return JobPage(consumed, cursor)

    @transaction(READ, retry=PATIENT)
    def running(self, conn: sa.Connection, *, limit: int = 500) -> list[JobRecord]:
        """The running jobs, newest first: every one however old, read through the running index."""
        return [job_record(r) for r in conn.execute(self.dialect.running_rows, {"limit": limit})]

    def next_run_at(self, *, names: Sequence[str], queues: Sequence[str] | None, now: float) -> float | None:
        """The earliest future run_at among pending jobs this worker could claim (to sleep until then)."""
        if not names:
            return None
        return self._next_run_at(list(names), list(queues) if queues else None, now)

    @transaction(READ, retry=BRIEF)
    def _next_run_at(self, conn: sa.Connection, names: list[str], queues: list[str] | None, now: float) -> float | None:
        params: dict[str, Any] = {"now": self.bind_now(now), "names": names}
        if queues:
            params["queues"] = queues
        value = conn.execute(self.dialect.next_run_at[bool(queues)], params).scalar()
        return None if value is None else float(value)

    @transaction(READ, retry=PATIENT)
    def stats(self, conn: sa.Connection, *, now: float) -> dict[str, Any]:
        """Counts by status, by queue and by job type, the oldest due pending job's age (overall and per
        queue), and the running count."""
        rows = conn.execute(self.dialect.stats_counts).all()
        oldest = conn.execute(self.dialect.oldest_due, {"now": now}).scalar()
        oldest_by_queue = {
            str(queue): max(0.0, now - float(run_at))
            for queue, run_at in conn.execute(self.dialect.oldest_due_by_queue, {"now": now})
        }
        by_status: dict[str, int] = {}
        by_queue: dict[str, dict[str, int]] = {}
        by_type: dict[str, dict[str, int]] = {}
        for status, queue, name, count in rows:
            by_status[status] = by_status.get(status, 0) + int(count)
            by_queue.setdefault(queue, {}).setdefault(status, 0)
            by_queue[queue][status] += int(count)
            by_type.setdefault(name, {}).setdefault(status, 0)
            by_type[name][status] += int(count)
        return {
            "by_status": by_status,
            "by_queue": by_queue,
            "by_type": by_type,
            "running": by_status.get(JobState.RUNNING, 0),
            "oldest_pending_age": None if oldest is None else max(0.0, now - float(oldest)),
            "oldest_pending_age_by_queue": oldest_by_queue,
        }

    @transaction(READ, retry=BRIEF)
    def queue_gauges(self, conn: sa.Connection, *, now: float) -> list[QueueGauge]:
        """Live jobs by queue and state, with each queue's oldest due pending run time: one statement."""
        rows = conn.execute(self.dialect.queue_gauges, {"now": now}).all()
        return [
            QueueGauge(str(queue), str(status), int(count), None if oldest is None else float(oldest))
            for queue, status, count, oldest in rows
        ]

    @transaction(READ, retry=PATIENT)
    def now(self, conn: sa.Connection) -> float:
        """The database's clock, in epoch seconds."""
        return float(conn.execute(self.dialect.select_now).scalar_one())

"""Plain records the store hands upward; no SQLAlchemy types leak past the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLAIM_COLUMNS = (
    "id, name, queue, priority, args, attempt, max_retries, errors, checkpoint, crashes, lease, run_at, created_at"
)


@dataclass(slots=True)
class NewJob:
    """One row to insert."""

    name: str
    args: str
    queue: str
    priority: int
    run_at: float
    max_retries: int


def insert_params(row: NewJob, now: float) -> dict[str, Any]:
    """Bind values of the one-row insert, shared by both dialects' statements."""
    return {
        "name": row.name,
        "queue": row.queue,
        "priority": row.priority,
        "args": row.args,
        "run_at": row.run_at,
        "now": now,
        "max_retries": row.max_retries,
    }


@dataclass(slots=True)
class ClaimedJob:
    """A job this worker holds a lease on: (worker_id, lease) must match every later write."""

    id: int
    name: str
    queue: str
    priority: int
    args: str
    attempt: int
    max_retries: int
    errors: str | None
    checkpoint: str | None
    crashes: int
    lease: int
    run_at: float
    created_at: float
    worker_id: str = ""

    @classmethod
    def from_row(cls, row: Any, worker_id: str) -> ClaimedJob:
        """Build from a claim statement's RETURNING row."""
        job = cls(*row[:13])
        job.worker_id = worker_id
        return job


@dataclass(slots=True)
class JobRecord:
    """Everything stored about one job, as read by handles and admin commands."""

    id: int
    name: str
    queue: str
    priority: int
    status: str
    args: str
    run_at: float
    created_at: float
    attempt: int
    max_retries: int
    worker_id: str | None
    started_at: float | None
    finished_at: float | None
    result: str | None
    errors: str | None
    progress: str | None
    checkpoint: str | None
    cancel_requested: str | None
    crashes: int
    lease: int
    updated_at: float | None


@dataclass(slots=True)
class WorkerRecord:
    """One worker process as registered in the workers table."""

    id: str
    host: str
    pid: int
    queues: str | None
    concurrency: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    #: Executor threads abandoned by jobs that overran their timeout, as of the last heartbeat.
    stuck: int = 0
    alive: bool = False
    running: list[int] = field(default_factory=list)

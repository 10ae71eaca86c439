"""Why a pending job is waiting: one line, from the facts the store holds about it.

Each reason is a function of :class:`WaitFacts` that returns its line or None; :data:`WAIT_REASONS`
lists them in the order they are asked, and the first that answers is the reason. Reasons that
later work adds (a rate limit) are functions of the same shape put into
that list before :func:`no_worker`, as :func:`concurrency_key_full` is, with the facts they need added to :class:`WaitFacts`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jobkit._clock import to_datetime
from jobkit._store import JobRecord, Store, WorkerRecord
from jobkit._vocabulary import JobState

__all__ = [
    "WAIT_REASONS",
    "WaitFacts",
    "concurrency_key_full",
    "explain",
    "no_worker",
    "queue_paused",
    "scheduled",
    "why_waiting",
]


@dataclass(frozen=True, slots=True)
class WaitFacts:
    """What decides whether a pending job can be claimed now."""

    job: JobRecord
    #: The time eligibility is judged by (the database's clock, or a fake clock in tests).
    now: float
    paused_queues: frozenset[str]
    #: Every registered worker row (``alive`` tells which still beat).
    workers: Sequence[WorkerRecord]
    #: The running jobs holding the job's concurrency key (empty when it has none).
    key_holders: Sequence[int] = ()


Reason = Callable[[WaitFacts], str | None]


def scheduled(facts: WaitFacts) -> str | None:
    """The job's run time lies ahead."""
    wait = facts.job.run_at - facts.now
    if wait <= 0:
        return None
    when = to_datetime(facts.job.run_at)
    return f"scheduled for later: runs at {when.isoformat(timespec='seconds') if when else facts.job.run_at} (in {wait:.1f} s)"


def queue_paused(facts: WaitFacts) -> str | None:
    """Its queue is paused: no worker claims from it."""
    if facts.job.queue in facts.paused_queues:
        return f"queue {facts.job.queue!r} is paused (jobkit queues resume {facts.job.queue})"
    return None


def concurrency_key_full(facts: WaitFacts) -> str | None:
    """As many jobs holding its concurrency key run as its limit allows."""
    job = facts.job
    if job.concurrency_key is None or job.concurrency_limit is None or len(facts.key_holders) < job.concurrency_limit:
        return None
    ids = [str(job_id) for job_id in facts.key_holders]
    held = ids[0] if len(ids) == 1 else ", ".join(ids[:-1]) + " and " + ids[-1]
    jobs = "job" if len(ids) == 1 else "jobs"
    return f"concurrency key {job.concurrency_key} full ({len(ids)}/{job.concurrency_limit}, held by {jobs} {held})"


def _listed(text: str | None, value: str) -> bool:
    """Whether a worker's stored JSON list names ``value`` (None: the worker takes every value)."""
    if text is None:
        return True
    try:
        names = json.loads(text)
    except ValueError:
        return True  # unreadable: do not blame the worker
    return not isinstance(names, list) or value in names


def no_worker(facts: WaitFacts) -> str | None:
    """No live worker would claim it: none runs, none works its queue, or none has its job type."""
    job = facts.job
    live = [worker for worker in facts.workers if worker.alive and worker.stopped_at is None]
    if not live:
        return "no worker is running"
    on_queue = [worker for worker in live if _listed(worker.queues, job.queue)]
    if not on_queue:
        return f"no worker registered for queue {job.queue!r}"
    if not any(_listed(worker.names, job.name) for worker in on_queue):
        return f"no worker registered for job type {job.name!r} (on queue {job.queue!r})"
    return None


#: The reasons asked, in order; the first that answers explains the wait.
WAIT_REASONS: list[Reason] = [scheduled, queue_paused, concurrency_key_full, no_worker]


def explain(facts: WaitFacts) -> str:
    """One line: why this job is waiting, or that it is not waiting (not pending)."""
    status = facts.job.status
    if status != JobState.PENDING:
        held = f" on worker {facts.job.worker_id}" if status == JobState.RUNNING and facts.job.worker_id else ""
        return f"not waiting: it is {status}{held}"
    for reason in WAIT_REASONS:
        line = reason(facts)
        if line is not None:
            return line
    return "due now: waiting for a free slot on a worker that runs it"


def why_waiting(store: Store, job_id: int, *, now: float, rescue_after: float) -> str | None:
    """Gather the facts about one job from the store and explain its wait; None when it does not exist."""
    record = store.get(job_id)
    if record is None:
        return None
    facts = WaitFacts(
        job=record,
        now=now,
        paused_queues=frozenset(store.paused_queues()),
        workers=store.list_workers(rescue_after=rescue_after),
        key_holders=() if record.concurrency_key is None else store.key_holders(record.concurrency_key),
    )
    return explain(facts)

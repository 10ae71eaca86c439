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
from typing import Any

from jobkit._clock import to_datetime
from jobkit._store import JobRecord, RateKey, RateWindow, Store, WorkerRecord
from jobkit._vocabulary import JobState

__all__ = [
    "WAIT_REASONS",
    "WaitFacts",
    "concurrency_key_full",
    "explain",
    "no_worker",
    "ordered_key_turn",
    "queue_paused",
    "rate_limited",
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
    #: Each of the job's keys with its limit and holders, for a job with several keys.
    keys: Sequence[tuple[str, int, Sequence[int]]] = ()
    #: The oldest unfinished job of the job's ordered key (None: the key is not ordered).
    ordered_head: int | None = None
    #: What the job's rate-limit window holds now (None when it has no rate limit).
    rate_window: RateWindow | None = None


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
    """As many jobs holding one of its concurrency keys run as that key's limit allows."""
    job = facts.job
    keys = facts.keys
    if not keys and job.concurrency_key is not None and job.concurrency_limit is not None:
        keys = [(job.concurrency_key, job.concurrency_limit, facts.key_holders)]
    for key, limit, holders in keys:
        if len(holders) >= limit:
            ids = [str(job_id) for job_id in holders]
            held = ids[0] if len(ids) == 1 else ", ".join(ids[:-1]) + " and " + ids[-1]
            jobs = "job" if len(ids) == 1 else "jobs"
            return f"concurrency key {key} full ({len(ids)}/{limit}, held by {jobs} {held})"
    return None


def ordered_key_turn(facts: WaitFacts) -> str | None:
    """Its key is ordered and an earlier job of the key has not finished."""
    head = facts.ordered_head
    if head is None or head == facts.job.id:
        return None
    return f"ordered key {facts.job.concurrency_key}: waits for job {head}, enqueued before it, to finish"


def rate_limited(facts: WaitFacts) -> str | None:
    """Its rate limit's window has no room for its start yet."""
    job, window = facts.job, facts.rate_window
    if window is None or window.next_slot <= facts.now:
        return None
    return (
        f"rate limit {job.rate_key} (next slot in {window.next_slot - facts.now:.1f} s; "
        f"{window.used}/{job.rate_limit} used in the last {_period(job.rate_period)})"
    )


def _period(seconds: float | None) -> str:
    seconds = seconds or 0.0
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


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
WAIT_REASONS: list[Reason] = [scheduled, queue_paused, ordered_key_turn, concurrency_key_full, rate_limited, no_worker]


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
        **_gate_facts(store, record),
        rate_window=None if record.rate_key is None else store.rate_window(_rate_of(record), now=now),
    )
    return explain(facts)


def _gate_facts(store: Store, record: JobRecord) -> dict[str, Any]:
    """Each key's holders for a job with several keys, and its ordered key's head."""
    facts: dict[str, Any] = {}
    if record.concurrency_ordered and record.concurrency_key is not None:
        facts["ordered_head"] = store.ordered_head(record.concurrency_key)
    if record.concurrency_keys is not None:
        try:
            keys = [(str(k), int(n)) for k, n in json.loads(record.concurrency_keys)]
        except (ValueError, TypeError):
            return facts
        holders = store.key_holders_all([k for k, _ in keys])
        facts["keys"] = [(k, n, holders.get(k, [])) for k, n in keys]
    return facts


def _rate_of(record: JobRecord) -> RateKey:
    """The rate-limit window a job's row names, with the spec it was enqueued under."""
    assert record.rate_key is not None
    return RateKey(
        record.rate_key, int(record.rate_limit or 1), float(record.rate_period or 0), int(record.rate_weight or 1)
    )

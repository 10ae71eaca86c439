"""Plain records the store hands upward, and the column lists that follow from them by name.

No SQLAlchemy type leaks past the store. Every field of a row record names a column of
:data:`~jobkit._store.schema.jobs` (or ``workers``), checked when this module is imported, and
the dialects build their column, ``RETURNING`` and bulk-packing lists from these field names:
a new column is one line in the schema (and a migration); a record that should carry it gains a
field of the same name, and every statement that reads or writes the record follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, NamedTuple, TypedDict

import sqlalchemy as sa

from jobkit._store import schema
from jobkit._vocabulary import TransitionKind


@dataclass(slots=True)
class NewJob:
    """One row to insert; each field is the column of the same name."""

    name: str
    args: str
    queue: str
    priority: int
    run_at: float
    max_retries: int
    #: The enqueuer's trace context (JSON text), when tracing is on.
    trace_context: str | None = None


class ConcurrencyKey(NamedTuple):
    """A job's concurrency key and how many jobs holding it may run at once."""

    key: str
    limit: int
    #: Every key of a job with several keys (JSON, see ``concurrency_keys``); else None.
    extra: str | None = None
    #: The key runs its jobs strictly in enqueue order.
    ordered: bool = False


class RateKey(NamedTuple):
    """A job's rate-limit window and its spec: at most ``limit`` weighted starts per ``period`` seconds."""

    key: str
    limit: int
    period: float
    weight: int = 1


class RateWindow(NamedTuple):
    """What a rate-limit window holds now: weighted starts within its period, and when the next start fits."""

    used: int
    #: When a start of ``weight`` fits (now when it already does).
    next_slot: float


@dataclass(frozen=True, slots=True)
class UniqueJob:
    """One unique job to insert: the row, its key and what a live row with the same key means.

    ``states`` are the states in which a row keeps others with its key out; ``window`` (seconds)
    limits that to rows created that recently (a ``unique_for`` job); ``on_conflict`` is what
    a duplicate does to the pending row it found: ``skip``, ``replace`` (its args, priority and
    run_at) or ``debounce`` (its run_at).
    """

    job: NewJob
    key: str
    states: frozenset[str]
    on_conflict: str = "skip"
    window: float | None = None
    #: The new job's concurrency key, when its type has one.
    concurrency: ConcurrencyKey | None = None
    #: The new job's rate-limit window, when its type has one.
    rate: RateKey | None = None


class Enqueued(NamedTuple):
    """A unique job's enqueue: the id of the job that holds its key, and whether that one existed already."""

    id: int
    duplicate: bool


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
    #: The enqueuer's trace context (JSON text) or None: what an attempt's span links to.
    trace_context: str | None = None
    worker_id: str = ""

    @classmethod
    def from_row(cls, row: Sequence[Any], worker_id: str) -> ClaimedJob:
        """Build from a claim's ``RETURNING`` row, which lists :data:`CLAIM_COLUMNS` (this class's own fields) in order.

        The claim is the hot path: building by position from a list derived from the field
        names costs a fraction of building a dict per row.
        """
        job = cls(*row)
        job.worker_id = worker_id
        return job


@dataclass(slots=True)
class JobRecord:
    """Everything stored about one job, as read by handles and admin commands.

    ``status`` is the stored text as it is (a damaged row stays readable); compare it with
    :class:`~jobkit._vocabulary.JobState` members, which are strings.
    """

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
    #: The job's concurrency key and limit (None: the job has none).
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    #: ``[[key, limit], ...]`` for a job with several keys (None: one key or none).
    concurrency_keys: str | None = None
    #: True for a job of an ordered key (None otherwise).
    concurrency_ordered: bool | None = None
    #: The job's rate-limit window and spec (None: the job has none).
    rate_key: str | None = None
    rate_limit: int | None = None
    rate_period: float | None = None
    rate_weight: int | None = None


@dataclass(frozen=True, slots=True)
class QueueGauge:
    """One (queue, state) group of live jobs, as metrics read them once per scrape."""

    queue: str
    state: str
    count: int
    #: Run time (epoch seconds) of the group's oldest pending job that is due; None when none is.
    oldest_due: float | None


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
    #: The job types the worker runs, as a JSON array (None: a worker of an older version).
    names: str | None = None
    #: The pool and its children as JSON text (``{"pool": ..., "children": [...]}``), as of the last heartbeat.
    pool: str | None = None
    #: Not columns: whether the heartbeat is fresh by the database's clock, and the jobs it runs.
    alive: bool = False
    running: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Transition:
    """One fenced write on a running job; ``values`` are the statement's bind values (see the dialects)."""

    kind: TransitionKind
    job_id: int
    worker: str
    lease: int
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Callers may pass the kind's text; an unknown kind fails here, not in the middle of a batch.
        self.kind = TransitionKind(self.kind)


class Completion(NamedTuple):
    """One job of a batch completion: each field is the column of the same name."""

    id: int
    lease: int
    result: str


class HeldJob(NamedTuple):
    """A job the database says a worker holds: its id, lease and standing request (``cancel_requested``)."""

    id: int
    lease: int
    request: str | None


class LostJob(NamedTuple):
    """A running job whose worker a rescue pass judged lost, as stored (counters read defensively)."""

    id: int
    worker: str | None
    #: The lease as stored: the rescue's write is fenced on it.
    lease: Any
    #: Counters as numbers (0 where the stored value is unreadable), for the policy to judge.
    attempt: int
    max_retries: int
    #: Crashes before this one.
    crashes: int
    #: The stored error history (None when absent or not text).
    errors: str | None
    #: The attempt as stored, for the error message (it may be damaged).
    attempt_shown: str
    #: How the worker was judged lost, re-checked by the write: by watching its heartbeat
    #: (``observed``, with the value ``seen`` unchanged) or by the database's clock (``rescue_after``).
    observed: bool
    seen: Any
    rescue_after: float


class Rescue(NamedTuple):
    """What the policy decided for one lost job: the write (rescue or rescue_fail) and whether it is a poison pill."""

    job: LostJob
    kind: TransitionKind
    poisoned: bool = False


class Rescued(TypedDict):
    """One job a rescue pass took from a lost worker, and what it became."""

    job_id: int
    status: str
    worker: str | None
    crashes: int


@dataclass(slots=True)
class JobPage:
    """One page of a job listing, newest first; pass ``next_cursor`` back as ``before`` for the next page.

    ``next_cursor`` is the lowest id this page examined (None: nothing older is left). A page
    with filters examines a bounded window of rows, so it may hold fewer than ``limit`` items
    while older matches remain: keep paging until ``next_cursor`` is None.
    """

    items: list[JobRecord]
    next_cursor: int | None


class MinuteCount(NamedTuple):
    """Jobs of one queue that finished in one minute (its start, epoch seconds): completed and failed."""

    minute: int
    queue: str
    completed: int
    failed: int


@dataclass(slots=True)
class AuditEntry:
    """One operator action recorded by the dashboard; ``job_ids`` is the JSON array stored."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    job_ids: str
    outcome: str


@dataclass(slots=True)
class NewSchedule:
    """A schedule's definition as declared (``@job(cron=...)`` or ``queue.schedule``); each field is a column."""

    key: str
    name: str
    cron: str
    timezone: str
    args: str
    queue: str | None
    catchup: str
    catchup_window: float | None
    overlap: str
    source: str


@dataclass(slots=True)
class ScheduleRecord:
    """A stored schedule: its definition, its state and the state of the last job it made."""

    key: str
    name: str
    cron: str
    timezone: str
    args: str
    queue: str | None
    catchup: str
    catchup_window: float | None
    overlap: str
    paused: bool
    source: str
    created_at: float
    updated_at: float
    last_fire_at: float | None
    last_job_id: int | None
    missed: int
    #: Not a column: the status of the job ``last_job_id`` names (None when it is gone or never was).
    last_job_status: str | None = None


@dataclass(slots=True)
class PlannedFire:
    """One fire time a scheduler decided: enqueue ``job`` for it, or record it skipped (``job`` None)."""

    fire_at: float
    job: NewJob | None
    #: The job's concurrency keys and rate-limit window, when its type declares them: written in
    #: the fire's transaction, as an enqueue writes them.
    key: ConcurrencyKey | None = None
    rate: RateKey | None = None


class Fired(NamedTuple):
    """A fire time this call recorded first, and the job it enqueued (None: skipped)."""

    fire_at: float
    job_id: int | None


def _columns(record: type[Any], table: sa.Table, *, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The record's field names, each checked to be a column of ``table``."""
    names = tuple(f.name for f in fields(record) if f.name not in skip)
    unknown = [name for name in names if name not in table.c]
    if unknown:
        raise TypeError(f"{record.__name__}: fields {unknown} are not columns of {table.name}")
    return names


#: The columns of a full job row, read into :class:`JobRecord` by name.
JOB_COLUMNS = _columns(JobRecord, schema.jobs)
#: The columns a claim returns, in :class:`ClaimedJob`'s field order.
CLAIM_COLUMNS = _columns(ClaimedJob, schema.jobs, skip=("worker_id",))
#: The columns an insert takes from :class:`NewJob`, in its field order (the bulk packers' order).
INSERT_COLUMNS = _columns(NewJob, schema.jobs)
#: The columns of a batch completion, in :class:`Completion`'s field order.
COMPLETION_COLUMNS: tuple[str, ...] = Completion._fields
#: The stored columns of a worker row.
WORKER_COLUMNS = _columns(WorkerRecord, schema.workers, skip=("alive", "running"))

#: The columns of a schedule's definition, in :class:`NewSchedule`'s field order.
SCHEDULE_DEFINITION_COLUMNS = _columns(NewSchedule, schema.schedules)
#: The stored columns of a schedule row.
SCHEDULE_COLUMNS = _columns(ScheduleRecord, schema.schedules, skip=("last_job_status",))

if unknown := [name for name in COMPLETION_COLUMNS if name not in schema.jobs.c]:
    raise TypeError(f"Completion: fields {unknown} are not columns of jobkit_jobs")

#: The bulk packers' order: :data:`INSERT_COLUMNS` with unbounded text last, the arguments (the
#: longest) at the very end. Each field of a packed JSON row is extracted by position, and reaching
#: one parses every field before it, so the long ones go where nothing has to be skipped over them.
PACKED_COLUMNS = tuple(
    sorted(INSERT_COLUMNS, key=lambda name: (isinstance(schema.jobs.c[name].type, sa.Text), name == "args"))
)
#: The values of one :class:`NewJob` in :data:`PACKED_COLUMNS` order, as a tuple (the bulk packers' row).
packed_values = attrgetter(*PACKED_COLUMNS)


def insert_params(row: NewJob) -> dict[str, Any]:
    """Bind values of a one-row insert, by column name."""
    return dict(zip(PACKED_COLUMNS, packed_values(row), strict=True))


def job_record(row: Any) -> JobRecord:
    """A :class:`JobRecord` from a result row that selected :data:`JOB_COLUMNS`, by name."""
    return JobRecord(**row._mapping)


def worker_record(row: Any) -> WorkerRecord:
    """A :class:`WorkerRecord` from a row that selected :data:`WORKER_COLUMNS` and ``alive``, by name."""
    return WorkerRecord(**row._mapping)


def schedule_record(row: Any) -> ScheduleRecord:
    """A :class:`ScheduleRecord` from a row that selected :data:`SCHEDULE_COLUMNS` and ``last_job_status``."""
    values = dict(row._mapping)
    values["paused"] = bool(values["paused"])
    return ScheduleRecord(**values)

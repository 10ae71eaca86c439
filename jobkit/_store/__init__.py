"""The store: one typed interface over every statement jobkit runs, for SQLite and PostgreSQL.

Everything above the store (the facade, the runtime, the CLI, testing) uses this package only:
the :class:`Store` protocol, the records it hands out, :func:`open_store`, :func:`open_notifier`
and the start-up
and error checks. Its modules are private: engine.py (connections, transactions, retries),
statements.py, dialect.py, sqlite.py and postgres.py (all SQL: what both databases share, then
each one's own, with cron_statements.py for schedules), jobs.py, queries.py, admin.py,
maintenance.py and schedules.py (the operations, no SQL),
records.py and schema.py (rows and tables), store.py (the composed store and migrations),
borrow.py (a connection inside a transaction another library owns),
notify.py (the notifier: one per queue, what hears other processes) with each dialect's way to
listen in listen_postgres.py and listen_sqlite.py (SQLite's doorbell sockets in doorbell.py).

Times are epoch seconds. Every method that decides by time takes ``now`` from the caller's
clock; under ``db_clock`` (PostgreSQL on the real clock) the server's clock decides instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from jobkit._store.borrow import borrowed_connection
from jobkit._store.diagnosis import is_missing_schema, is_transient
from jobkit._store.liveness import HeartbeatObserver
from jobkit._store.notify import Notifier, Watch
from jobkit._store.preflight import PREFLIGHT_TIMEOUT, check_database, database_location, display_url
from jobkit._store.records import (
    AuditEntry,
    ClaimedJob,
    Completion,
    ConcurrencyKey,
    Enqueued,
    Fired,
    HeldJob,
    JobPage,
    JobRecord,
    LostJob,
    MinuteCount,
    NewJob,
    NewSchedule,
    PlannedFire,
    QueueGauge,
    RateKey,
    RateWindow,
    Rescue,
    Rescued,
    ScheduleRecord,
    Transition,
    UniqueJob,
    WorkerRecord,
)
from jobkit._store.store import SQLStore
from jobkit._vocabulary import JobState


class Store(Protocol):
    """Every operation on jobs, queues and workers; one transaction each, retried on transient errors."""

    @property
    def safe_url(self) -> str:
        """The database URL as it may be printed (the password hidden)."""

    @property
    def heartbeats(self) -> HeartbeatObserver:
        """What this process saw of other workers' heartbeats (SQLite's rescue rule)."""

    @property
    def notifies_enqueues(self) -> bool:
        """True when every enqueue, from any process, wakes this process's workers with its run time."""

    # -- the job write path

    def enqueue(
        self,
        rows: Sequence[NewJob],
        *,
        now: float,
        connection: sa.Connection | None = None,
        keys: Sequence[ConcurrencyKey] | None = None,
        rates: Sequence[RateKey] | None = None,
    ) -> list[int]:
        """Insert jobs and wake workers, in ``connection``'s transaction when given; returns ids in order.

        ``keys``: each row's concurrency key (a job type with ``concurrency_key``); ``rates``: each
        row's rate-limit window (a job type with ``rate_limit``).
        """

    def enqueue_unique(
        self, rows: Sequence[UniqueJob], *, now: float, connection: sa.Connection | None = None
    ) -> list[Enqueued]:
        """Insert unique jobs, each unless a live job holds its key (then skip, replace or debounce that one).

        Returns, in input order, each row's job id and whether it was a duplicate.
        """

    def claim(
        self,
        *,
        worker: str,
        limit: int,
        names: Sequence[str],
        queues: Sequence[str] | None,
        now: float,
        keyed: Sequence[str] = (),
        limited: Sequence[str] = (),
        reschedule: Sequence[str] = (),
    ) -> list[ClaimedJob]:
        """Lease up to ``limit`` due jobs of these types (and queues), in (priority, run_at, id) order.

        ``keyed``: the types among ``names`` with a concurrency key, claimed within each key's limit.
        ``limited``: the types claimed by the gated claim (a rate limit, several or ordered keys),
        within each window and key; those in ``reschedule`` move to their window's next slot when
        it is full.
        """

    def key_holders(self, key: str) -> list[int]:
        """The running jobs holding concurrency key ``key``, by id."""

    def key_holders_all(self, keys: Sequence[str]) -> dict[str, list[int]]:
        """The running jobs holding each of ``keys`` (every key of a job with several counted), by id."""

    def ordered_head(self, key: str) -> int | None:
        """The oldest unfinished job of an ordered concurrency key: the one that runs next."""

    def rate_window(self, rate: RateKey, *, now: float) -> RateWindow:
        """What a rate-limit window holds now: its weighted starts, and when a start of ``rate.weight`` fits."""

    def consume_rate(self, rate: RateKey, *, now: float) -> bool:
        """Take ``rate.weight`` starts from a window if they fit now (non-job code); whether they did."""

    def apply(self, transitions: Sequence[Transition], *, now: float) -> list[bool]:
        """Write fenced transitions; per transition, whether its lease still held."""

    def apply_detailed(self, transitions: Sequence[Transition], *, now: float) -> list[JobState | None]:
        """Write fenced transitions; per transition, the job's state after it (None: lease refused)."""

    def transition(self, t: Transition, *, now: float) -> bool:
        """Write one fenced transition; whether its lease still held."""

    def complete(self, *, worker: str, rows: Sequence[Completion], now: float) -> set[int]:
        """Complete distinct jobs of one worker in one statement; the ids whose lease still held."""

    def write_progress(self, job_id: int, *, worker: str, lease: int, progress: str, now: float) -> bool:
        """Store a running job's progress under its lease and wake waiters; whether the lease held."""

    # -- reads

    def get(self, job_id: int) -> JobRecord | None:
        """One job's full row, or None."""

    def status_of(self, job_id: int) -> str | None:
        """One job's stored status, or None."""

    def list_jobs(
        self, *, status: str | None = None, name: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Jobs of one status, type and queue (each optional), newest first."""

    def page_jobs(
        self,
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
        scan: int = ...,
    ) -> JobPage:
        """One keyset page of jobs below id ``before``, newest first, every given filter holding."""

    def running(self, *, limit: int = 500) -> list[JobRecord]:
        """The running jobs, newest first (every one, however many newer rows the table holds)."""

    def next_run_at(self, *, names: Sequence[str], queues: Sequence[str] | None, now: float) -> float | None:
        """The earliest future run time among pending jobs of these types (and queues), or None."""

    def stats(self, *, now: float) -> dict[str, Any]:
        """Counts by status, queue and type, the running count and the oldest due job's age."""

    def queue_gauges(self, *, now: float) -> list[QueueGauge]:
        """Live (not finished) jobs counted by queue and state in one statement; ``oldest_due`` is the
        run time of the queue's oldest pending job due by ``now`` (None on other states' rows)."""

    def now(self) -> float:
        """The database's clock."""

    # -- admin

    def cancel_job(self, job_id: int, *, now: float) -> str | None:
        """Cancel at once (pending, paused) or ask the worker (running); the resulting state."""

    def kill_job(self, job_id: int, *, now: float) -> str | None:
        """Cancel at once or have the worker abandon the attempt now; the resulting state."""

    def pause_job(self, job_id: int, *, now: float) -> str | None:
        """Hold a pending job or ask a running one to stop; the resulting state."""

    def resume_job(self, job_id: int, *, now: float) -> str | None:
        """Put a paused job back to pending or withdraw an undelivered pause; the resulting state."""

    def retry_job(self, job_id: int, *, now: float) -> bool:
        """A failed or cancelled job back to pending with fresh retries; whether it was one."""

    def discard_job(self, job_id: int, *, now: float, reason: str = ...) -> str | None:
        """Fail a job at once (pending, paused) or ask its worker (running), recording why; the resulting state."""

    def delete_job(self, job_id: int) -> bool:
        """Delete a terminal job; whether it was one."""

    def clear(
        self, status: str, *, finished_before: float | None = None, name: str | None = None, queue: str | None = None
    ) -> int:
        """Delete terminal jobs of one status (older, of a type or queue); how many."""

    def retry_failed(self, *, now: float, name: str | None = None, queue: str | None = None) -> int:
        """Every failed job (of a type or queue) back to pending; how many."""

    def pause_queue(self, queue: str, *, now: float) -> None:
        """Stop every worker from claiming ``queue`` until it is resumed."""

    def resume_queue(self, queue: str) -> bool:
        """Let workers claim ``queue`` again; whether it was paused."""

    def paused_queues(self) -> list[str]:
        """The paused queues, sorted."""

    # -- the operators' tables (the dashboard)

    def add_minute_counts(self, counts: Sequence[MinuteCount]) -> None:
        """Add finished-job counts to their minutes and queues (workers call this every few seconds)."""

    def minute_counts(self, *, since: float) -> list[MinuteCount]:
        """The per-minute counts of finished jobs from the minute holding ``since`` on, oldest first."""

    def record_audit(
        self, *, actor: str, action: str, target: str, job_ids: Sequence[int], outcome: str, now: float
    ) -> None:
        """Append one operator action to the audit log."""

    def audit_log(self, *, before: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries below id ``before``, newest first."""

    # -- workers and maintenance

    def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        queues: list[str] | None,
        concurrency: int,
        names: list[str] | None = None,
    ) -> None:
        """Insert this process's worker row (with the job types it runs), its first heartbeat stamped."""

    def heartbeat(self, worker_id: str, *, stuck: int = 0, pool: str | None = None) -> int | None:
        """Renew the worker's lease, record its stuck threads and its pool (JSON); the jobs it holds (None: row gone)."""

    def mark_stopped(self, worker_id: str) -> None:
        """Mark a worker stopped (its row goes once no running job names it)."""

    def held_jobs(self, worker_id: str) -> list[HeldJob]:
        """The jobs the database says this worker holds."""

    def lost_jobs(
        self,
        *,
        rescue_after: float,
        now: float,
        limit: int = 500,
        exclude_worker: str | None = None,
        observer: HeartbeatObserver | None = None,
        margin: float = 0.0,
    ) -> list[LostJob]:
        """The running jobs of lost workers (never ``exclude_worker``'s), for the policy to judge."""

    def rescue_jobs(self, rescues: Sequence[Rescue], *, now: float) -> list[Rescued]:
        """Execute the policy's rescue or rescue_fail of lost jobs, each under its fence; what each became."""

    def prune(self, *, older_than: float, limit: int = 5000) -> int:
        """Delete terminal jobs finished before ``older_than`` and dead worker rows; how many jobs."""

    def list_workers(self, *, rescue_after: float) -> list[WorkerRecord]:
        """Every worker row, whether it is alive, and the jobs it runs."""

    def checkpoint_wal(self) -> bool:
        """Fold SQLite's write-ahead log back and truncate it; whether all of it was (PostgreSQL: True)."""

    # -- recurring jobs

    def upsert_schedule(self, schedule: NewSchedule, *, now: float) -> None:
        """Insert a schedule, or give an existing one this definition (paused, last fire, missed kept)."""

    def delete_schedule(self, key: str) -> bool:
        """Delete a schedule (its fire rows stay until pruned); whether it existed."""

    def pause_schedule(self, key: str, *, paused: bool, now: float) -> bool:
        """Pause a schedule, or resume it from ``now`` (the fire times it was paused over are skipped)."""

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by key, with the status of its last job."""

    def get_schedule(self, key: str) -> ScheduleRecord | None:
        """One schedule, or None."""

    def schedule_fires(self, key: str) -> list[tuple[float, int | None, str]]:
        """The recorded fires of a schedule, oldest first: (fire time, job id, outcome)."""

    def record_fires(
        self,
        key: str,
        *,
        expected_last_fire: float | None,
        last_fire_at: float,
        fires: Sequence[PlannedFire],
        missed: int,
        now: float,
    ) -> list[Fired] | None:
        """One tick of a schedule in one transaction: compare-and-set ``last_fire_at`` (None: another
        scheduler won, or the schedule is paused), then each fire row not recorded before and its job."""

    def fire_now(self, key: str, fire: PlannedFire, *, now: float) -> int:
        """Enqueue a schedule's job now, outside its timetable, recording a manual fire; the job's id."""

    def prune_fires(self, *, older_than: float, limit: int = 5000) -> int:
        """Delete fire rows recorded before ``older_than``; how many."""

    # -- the store itself

    def migrate(self) -> None:
        """Bring the schema to the newest migration."""

    def close(self) -> None:
        """Close every pooled connection."""


def open_store(
    url: str, *, auto_migrate: bool = True, db_clock: bool = False, process_clock: Callable[[], float] = time.time
) -> Store:
    """Open the store on ``url`` (SQLite or PostgreSQL), migrated unless ``auto_migrate`` is off.

    ``db_clock`` (PostgreSQL): the server's clock decides eligibility and stamps transitions;
    ``process_clock`` (SQLite): this process's clock, which stamps its heartbeats.

    Example::

        store = open_store("sqlite:///jobs.sqlite3")
        [job_id] = store.enqueue([NewJob("emails.send", "{}", "default", 0, time.time(), 3)], now=time.time())
    """
    return SQLStore(url, auto_migrate=auto_migrate, db_clock=db_clock, process_clock=process_clock)


def open_notifier(store: Store) -> Notifier:
    """A notifier on ``store``'s database: wake-ups for workers, watches for handles (not started yet).

    Example::

        notifier = open_notifier(store)
        notifier.start()
        unsubscribe = notifier.on_wake(lambda payload: print("jobs may be due", payload))
    """
    # The listener needs the connection URL and channels, which only the composed store has.
    if not isinstance(store, SQLStore):
        raise TypeError(f"a notifier needs the store open_store() returns, not {type(store).__name__}")
    return Notifier(store.listener())


__all__ = [
    "PREFLIGHT_TIMEOUT",
    "AuditEntry",
    "ClaimedJob",
    "Completion",
    "ConcurrencyKey",
    "Enqueued",
    "Fired",
    "HeartbeatObserver",
    "HeldJob",
    "JobPage",
    "JobRecord",
    "LostJob",
    "MinuteCount",
    "NewJob",
    "NewSchedule",
    "Notifier",
    "PlannedFire",
    "QueueGauge",
    "RateKey",
    "RateWindow",
    "Rescue",
    "Rescued",
    "ScheduleRecord",
    "Store",
    "Transition",
    "UniqueJob",
    "Watch",
    "WorkerRecord",
    "borrowed_connection",
    "check_database",
    "database_location",
    "display_url",
    "is_missing_schema",
    "is_transient",
    "open_notifier",
    "open_store",
]

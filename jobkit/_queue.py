"""JobQueue: the facade that wires settings, store, registry, events and the worker together."""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from jobkit import _job
from jobkit._clock import Clock, SystemClock, to_datetime
from jobkit._events import EventBus, Listener
from jobkit._handle import JobHandle, JobInfo, JobWatch
from jobkit._job import CallOptions
from jobkit._payload import loads, to_json_args
from jobkit._registry import MAX_QUEUE, JobType, all_types, handler_type, name_problem, register
from jobkit._runtime.worker import Worker
from jobkit._settings import Settings, load_settings
from jobkit._store import JobRecord, NewJob, Store
from jobkit._store import admin as admin_sql
from jobkit._store import events as event_sql
from jobkit._store import workers as worker_sql
from jobkit.errors import EnqueueError, PayloadError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from jobkit._store import WorkerRecord

log = logging.getLogger("jobkit")


#: Key under which a stored JSON value that cannot be read is shown, with its raw text.
UNREADABLE = "__unreadable__"

_EPOCH_MIN = datetime.min.replace(tzinfo=UTC)
_EPOCH_MAX = datetime.max.replace(tzinfo=UTC)


def _safe_loads(text: Any, column: str, damaged: list[str]) -> Any:
    # A malformed row must stay readable by admin tools: show the raw text rather than raise.
    if text is None:
        return None
    try:
        return loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        damaged.append(f"{column}: not readable as JSON ({type(exc).__name__})")
        return {UNREADABLE: text if isinstance(text, str) else repr(text)}


def _safe_object(text: Any, column: str, damaged: list[str]) -> dict[str, Any] | None:
    """A JSON object column (args, progress, checkpoint): anything else is shown under UNREADABLE."""
    value = _safe_loads(text, column, damaged)
    if value is None or isinstance(value, dict):
        return value
    damaged.append(f"{column}: a JSON {type(value).__name__}, not an object")
    return {UNREADABLE: text}


def _safe_errors(text: Any, damaged: list[str]) -> list[dict[str, Any]]:
    value = _safe_loads(text, "errors", damaged)
    if value is None:
        return []
    if not isinstance(value, list):
        if UNREADABLE not in (value if isinstance(value, dict) else {}):
            damaged.append(f"errors: a JSON {type(value).__name__}, not a list")
        return [{"type": "DamagedHistory", "message": "the stored error history is not a JSON list", "raw": text}]
    entries: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, dict):
            entries.append(item)
        else:
            damaged.append("errors: an entry that is not a JSON object")
            entries.append(
                {"type": "DamagedEntry", "message": "a stored error entry is not a JSON object", "raw": item}
            )
    return entries


def _safe_time(value: Any, column: str, damaged: list[str], *, required: bool) -> datetime | None:
    """Epoch seconds as an aware datetime; damage is noted and shown clamped (required) or as None."""
    if value is None:
        if required:
            damaged.append(f"{column}: missing")
            return _EPOCH_MIN
        return None
    try:
        return to_datetime(float(value))
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    damaged.append(f"{column}: out of range ({value!r})")
    if not required:
        return None
    return _EPOCH_MAX if number > 0 else _EPOCH_MIN  # NaN and the far past alike show as the earliest time


def _info(record: JobRecord) -> JobInfo:
    """A row as a JobInfo, never raising: damaged values are shown as such and listed in ``damaged``."""
    damaged: list[str] = []
    run_at = _safe_time(record.run_at, "run_at", damaged, required=True)
    created = _safe_time(record.created_at, "created_at", damaged, required=True)
    assert run_at is not None and created is not None
    return JobInfo(
        id=record.id,
        name=record.name,
        queue=record.queue,
        priority=record.priority,
        status=record.status,
        args=_safe_object(record.args, "args", damaged) or {},
        run_at=run_at,
        created_at=created,
        attempt=record.attempt,
        max_retries=record.max_retries,
        started_at=_safe_time(record.started_at, "started_at", damaged, required=False),
        finished_at=_safe_time(record.finished_at, "finished_at", damaged, required=False),
        result=_safe_loads(record.result, "result", damaged),
        errors=_safe_errors(record.errors, damaged),
        progress=_safe_object(record.progress, "progress", damaged),
        checkpoint=_safe_object(record.checkpoint, "checkpoint", damaged),
        cancel_requested=record.cancel_requested,
        crashes=record.crashes,
        worker_id=record.worker_id,
        damaged=damaged,
    )


def _older_than(value: timedelta | float | datetime | None, now: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return now - seconds


class JobQueue:
    """The queue: enqueue, run workers, inspect and control jobs.

    Example::

        queue = jobkit.configure(database_url="sqlite:///app.sqlite3", concurrency=10)
        queue.start()                 # worker threads in this process
        SendEmail.perform_later(to="a@b.c", subject="hi").result(timeout=10)
        queue.stop(grace=5)
    """

    _instance: ClassVar[JobQueue | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.clock: Clock = clock or SystemClock()
        # On the real clock every time that decides eligibility is the database's (PostgreSQL); a
        # fake clock (tests) keeps its own time everywhere.
        self.store = Store(
            self.settings.database_url,
            auto_migrate=self.settings.auto_migrate,
            db_clock=isinstance(self.clock, SystemClock),
        )
        self.events = EventBus()
        self._worker: Worker | None = None
        self._job_watcher = event_sql.JobWatcher(self.store)
        self.events.tap(self._wake_watchers)

    # -- the process-wide queue ------------------------------------------------------------------

    @classmethod
    def instance(cls) -> JobQueue:
        """The process-wide queue, created from ``JOBKIT_*`` settings on first use."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = JobQueue()
            return cls._instance

    @classmethod
    def set_instance(cls, queue: JobQueue | None) -> None:
        """Make ``queue`` the process-wide queue (None forgets it)."""
        with cls._instance_lock:
            cls._instance = queue

    # -- enqueueing (the Enqueuer protocol) ------------------------------------------------------

    def enqueue_jobs(
        self,
        job_type: JobType,
        args_list: list[dict[str, Any]],
        call: CallOptions,
        connection: Connection | None,
    ) -> list[JobHandle]:
        """Validate every item, insert them in one round trip, wake workers; returns handles in order."""
        options = job_type.options
        now = self.clock.now()
        if call.run_at is not None:
            run_at = call.run_at.timestamp()
        elif call.delay is not None:
            run_at = now + call.delay.total_seconds()
        else:
            run_at = now
        queue = call.queue or options.queue
        priority = options.priority if call.priority is None else call.priority
        schema, depth, size = options.enqueue_schema, self.settings.max_payload_depth, self.settings.max_payload_bytes
        rows = []
        for index, args in enumerate(args_list):
            try:
                text = to_json_args(schema, args, max_depth=depth, max_bytes=size)
            except PayloadError as exc:
                item = f"item {index}: " if len(args_list) > 1 else ""
                where = f"argument {exc.where()}" if exc.path else "arguments"
                raise EnqueueError(f"{options.name}: {item}{where}: {exc.reason}") from None
            rows.append(NewJob(options.name, text, queue, priority, run_at, options.max_retries))
        ids = self.store.enqueue(rows, connection, now)
        if self._worker is not None:
            self._worker.notify(repr(run_at) if run_at > now else "")
        for job_id in ids:
            self.events.emit({"type": "enqueued", "job_id": job_id, "name": options.name, "queue": queue})
        return [JobHandle(job_id, self) for job_id in ids]

    def handle(self, job_id: int) -> JobHandle:
        """A handle for an existing job id (from any process)."""
        return JobHandle(job_id, self)

    # -- handles (the HandleBackend protocol) --------------------------------------------------

    def job_info(self, job_id: int) -> JobInfo | None:
        """The job's current snapshot, or None."""
        record = self.store.get(job_id)
        return None if record is None else _info(record)

    def job_status(self, job_id: int) -> str | None:
        """The job's status, or None."""
        return self.store.status_of(job_id)

    def cancel_job(self, job_id: int) -> str | None:
        """Cancel a job from any process; returns cancelled, cancelling, its terminal status, or None."""
        status = admin_sql.cancel_job(self.store, job_id, self.clock.now())
        if status == "cancelled":
            self._emit_admin("cancelled", job_id)
        return status

    def kill_job(self, job_id: int) -> str | None:
        """End a job whatever it is doing, from any process: a pending or paused one at once (``cancelled``),
        a running one by having its worker abandon the attempt now (``killing``); it wins over every
        other request. Otherwise returns the job's terminal status, or None."""
        status = admin_sql.kill_job(self.store, job_id, self.clock.now())
        if status == "cancelled":
            self._emit_admin("cancelled", job_id)
        return status

    def pause_job(self, job_id: int) -> str | None:
        """Pause a job from any process; returns paused, pausing, its current status, or None."""
        status = admin_sql.pause_job(self.store, job_id, self.clock.now())
        if status == "paused":
            self._emit_admin("paused", job_id)
        return status

    def resume_job(self, job_id: int) -> str | None:
        """Resume a paused job; returns pending (or its current status)."""
        status = admin_sql.resume_job(self.store, job_id, self.clock.now())
        if status == "pending":
            self._emit_admin("resumed", job_id)
            if self._worker is not None:
                self._worker.notify()
        return status

    def retry_job(self, job_id: int) -> bool:
        """A failed or cancelled job back to pending now, its history kept."""
        took = admin_sql.retry_job(self.store, job_id, self.clock.now())
        if took:
            self._emit_admin("retried", job_id)
            if self._worker is not None:
                self._worker.notify()
        return took

    def watch(self, job_id: int) -> JobWatch:
        """Watch a job for changes (PostgreSQL NOTIFY from any process, in-process events on both)."""
        return self._job_watcher.watch(job_id)

    def _wake_watchers(self, event: dict[str, Any]) -> None:
        job_id = event.get("job_id")
        if isinstance(job_id, int):
            self._job_watcher.signal(job_id)

    def _emit_admin(self, kind: str, job_id: int, **extra: Any) -> None:
        self.events.emit({"type": kind, "job_id": job_id, **extra})

    # -- admin ------------------------------------------------------------------------------

    def discard_job(self, job_id: int, reason: str = "discarded by an operator") -> bool:
        """Force a job to failed, recording ``reason``; False if it had ended already (or does not exist).

        A pending (or retrying) or paused job fails at once; a running one is asked to end, and
        ends ``failed`` with a Discard entry whatever its attempt turns into.
        """
        state = admin_sql.discard_job(self.store, job_id, self.clock.now(), reason)
        if state == "failed":
            self._emit_admin("failed", job_id, error={"type": "Discard", "message": reason})
        return state in ("failed", "discarding", "killing")

    def delete_job(self, job_id: int) -> bool:
        """Delete a terminal job with its checkpoint, progress and history; False if it is not terminal."""
        took = admin_sql.delete_job(self.store, job_id)
        if took:
            self._emit_admin("deleted", job_id)
        return took

    def clear_completed(
        self,
        *,
        older_than: timedelta | float | datetime | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete completed jobs (optionally finished before ``older_than`` ago, of a type or queue)."""
        before = _older_than(older_than, self.clock.now())
        return admin_sql.clear(self.store, "completed", finished_before=before, name=name, queue=queue)

    def clear_failed(
        self,
        *,
        older_than: timedelta | float | datetime | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete failed jobs (optionally older ones, of a type or queue)."""
        before = _older_than(older_than, self.clock.now())
        return admin_sql.clear(self.store, "failed", finished_before=before, name=name, queue=queue)

    def retry_failed(self, *, name: str | None = None, queue: str | None = None) -> int:
        """Every failed job (of a type or queue) back to pending; returns how many."""
        count = admin_sql.retry_failed(self.store, self.clock.now(), name=name, queue=queue)
        if count and self._worker is not None:
            self._worker.notify()
        return count

    def pause_queue(self, name: str) -> None:
        """Every worker everywhere stops claiming from queue ``name`` until it is resumed."""
        problem = name_problem("queue", name, MAX_QUEUE)
        if problem is not None:
            raise ValueError(problem)  # checked as enqueue checks it: the name is stored
        admin_sql.pause_queue(self.store, name, self.clock.now())

    def resume_queue(self, name: str) -> bool:
        """Let workers claim from queue ``name`` again."""
        resumed = admin_sql.resume_queue(self.store, name)
        if self._worker is not None:
            self._worker.notify()
        return resumed

    def paused_queues(self) -> list[str]:
        """The queues currently paused."""
        return admin_sql.paused_queues(self.store)

    def stats(self) -> dict[str, Any]:
        """Counts by status, queue and job type, the oldest due pending job's age, and the running count."""
        return admin_sql.stats(self.store, self.clock.now())

    def jobs(
        self, *, status: str | None = None, name: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[JobInfo]:
        """Jobs filtered by status, type and queue, newest first."""
        return [_info(r) for r in self.store.list_jobs(status=status, name=name, queue=queue, limit=limit)]

    def job_types(self) -> dict[str, dict[str, Any]]:
        """Every registered job type with its options."""
        return {name: t.options.describe() for name, t in sorted(all_types().items())}

    def workers(self) -> list[WorkerRecord]:
        """Registered workers, live and dead, with their last heartbeat and running jobs."""
        return worker_sql.list_workers(self.store, self.settings.rescue_after)

    def register_handler(self, name: str, handler: Any, **options: Any) -> None:
        """Register a job type from a plain callable or an object with ``process(args)`` (and ``on_error``)."""
        register(handler_type(name, handler, **options))

    def enqueue(self, name: str, args: dict[str, Any] | None = None, **call: Any) -> JobHandle:
        """Enqueue a job by its registered name (for plugin handlers); ``call`` takes the ``set()`` options."""
        job_type = all_types().get(name) if isinstance(name, str) else None
        if job_type is None:
            raise LookupError(f"no job type named {name!r} is registered")
        unknown = set(call) - {"queue", "priority", "wait", "wait_until", "connection"}
        if unknown:
            raise EnqueueError(f"{name}: unknown enqueue options {sorted(unknown)}; arguments go in args={{...}}")
        if args is not None and not isinstance(args, Mapping):
            raise EnqueueError(f"{name}: args must be a mapping of arguments, got {type(args).__name__}")
        options = _job._call_options(
            call.get("queue"), call.get("priority"), call.get("wait"), call.get("wait_until"), job=name
        )
        return self.enqueue_jobs(job_type, [dict(args or {})], options, call.get("connection"))[0]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive state events (enqueued, started, progress, completed, failed, retrying, cancelled,
        paused, rescued, …) for all jobs; returns an unsubscribe function."""
        return self.events.subscribe(listener)

    # -- the worker ----------------------------------------------------------------------------

    @property
    def worker(self) -> Worker:
        """This process's worker (created on first use)."""
        if self._worker is None:
            self._worker = Worker(self.store, self.settings, self.clock, all_types, self.events.emit)
        return self._worker

    def start(self) -> None:
        """Start worker threads in this process; returns at once."""
        self.worker.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, wait up to ``grace`` seconds for running jobs, release what is left."""
        if self._worker is not None:
            self._worker.stop(grace)
            self._worker = None

    def run_once(self) -> int:
        """Claim and run due jobs in the calling thread; returns how many ran (for tests)."""
        return self.worker.run_once()

    def drain(self, max_rounds: int = 10_000) -> int:
        """Run due jobs until none is left; returns how many ran (for tests)."""
        total = 0
        for _ in range(max_rounds):
            ran = self.run_once()
            if not ran:
                break
            total += ran
        return total

    def run(self) -> int:
        """Run the worker until SIGINT or SIGTERM, or until it stops on its own; returns an exit status.

        The handlers are installed first, so a signal is honoured at every moment, also while the
        worker is still registering. The first signal drains (running jobs get ``shutdown_grace``
        seconds), a second shortens the drain; the status is then 0. A worker that decides to stop
        on its own (its ``fatal`` event: jobkit's tables disappeared, too many stuck executor
        threads) is drained the same way and its ``exit_code`` returned (2 and 4).

        Example::

            raise SystemExit(jobkit.configure(concurrency=10).run())
        """
        worker = self.worker
        received: list[int] = []

        def on_signal(signum: int, _frame: Any) -> None:
            # This runs in the main thread between two bytecodes, perhaps inside a lock the main
            # thread holds: it only records the signal, and sets an event the main thread never
            # waits on, so it cannot deadlock. Logging and stopping happen in the loop below.
            received.append(signum)
            if len(received) > 1:
                worker.hurry()

        failure: list[BaseException] = []

        def start() -> None:
            try:
                self.start()
            except BaseException as exc:  # re-raised in the calling thread below
                failure.append(exc)

        fatal = worker.fatal  # set by the worker when it decides to stop on its own
        previous: dict[int, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
            # Registration waits for the database for as long as it takes; the main thread stays
            # free meanwhile, so a signal can end the start-up as well as the run.
            starter = threading.Thread(target=start, name="jobkit-start", daemon=True)
            starter.start()
            while not received and not failure and not fatal.wait(0.1):
                pass
            if failure:
                self.stop(grace=0)
                raise failure[0]
            status = 0
            if received and not fatal.is_set():
                log.info(
                    "received %s; draining (grace %.0fs)",
                    signal.Signals(received[0]).name,
                    self.settings.shutdown_grace,
                )
            else:
                status = worker.exit_code or 1
                log.error("worker stopping on its own: %s", worker.fatal_reason or "no reason given")
            if starter.is_alive():
                # Still registering: make the registration give up, then stop what start() began.
                worker.request_stop()
                starter.join(timeout=2.0)
            if starter.is_alive():
                # Blocked in a database call that retries on its own: the producer has not started, so
                # nothing was claimed and there is nothing to drain. Stopping now would race with start().
                log.warning("start-up is still waiting for the database; stopping without waiting for it")
                return status
            self.stop()
            return status
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def close(self) -> None:
        """Stop the worker if running and release every database connection."""
        self.stop(grace=0)
        self._job_watcher.close()
        self.store.close()


def configure(settings: Settings | None = None, *, clock: Clock | None = None, **overrides: Any) -> JobQueue:
    """Create the process-wide queue from keyword arguments and ``JOBKIT_*`` variables.

    Example::

        queue = jobkit.configure(database_url="postgresql+psycopg://localhost/app", concurrency=10)
    """
    queue = JobQueue(settings, clock=clock, **overrides)
    JobQueue.set_instance(queue)
    return queue


_job.set_enqueuer_factory(JobQueue.instance)

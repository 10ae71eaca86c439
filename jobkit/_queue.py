"""JobQueue: the facade that wires settings, store, registry, events and the worker together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from jobkit import _job
from jobkit._clock import Clock, SystemClock
from jobkit._events import EventBus, Listener
from jobkit._handle import JobHandle, JobInfo, JobWatch
from jobkit._job import CallOptions
from jobkit._payload import to_json_args
from jobkit._registry import MAX_QUEUE, JobType, all_types, handler_type, name_problem, register
from jobkit._runtime.signals import serve
from jobkit._runtime.worker import Worker
from jobkit._settings import Settings, load_settings
from jobkit._snapshots import info_of, older_than_cutoff
from jobkit._store import NewJob, open_notifier, open_store
from jobkit._vocabulary import Event, EventType, JobState
from jobkit.errors import EnqueueError, PayloadError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from jobkit._store import WorkerRecord

log = logging.getLogger("jobkit")


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
        self.store = open_store(
            self.settings.database_url,
            auto_migrate=self.settings.auto_migrate,
            db_clock=isinstance(self.clock, SystemClock),
        )
        self.events = EventBus()
        self._worker: Worker | None = None
        # One notifier for this queue: wake-ups for its worker and watches for its handles.
        self._notifier = open_notifier(self.store)
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
        ids = self.store.enqueue(rows, now=now, connection=connection)
        self._notifier.announce(repr(run_at) if run_at > now else "", committed=connection is None)
        name = options.name
        for job_id in ids:  # built directly: this runs once per enqueued job
            self.events.emit(Event(EventType.ENQUEUED, job_id, {"name": name, "queue": queue}))
        return [JobHandle(job_id, self) for job_id in ids]

    def handle(self, job_id: int) -> JobHandle:
        """A handle for an existing job id (from any process)."""
        return JobHandle(job_id, self)

    # -- handles (the HandleBackend protocol) --------------------------------------------------

    def job_info(self, job_id: int) -> JobInfo | None:
        """The job's current snapshot, or None."""
        record = self.store.get(job_id)
        return None if record is None else info_of(record)

    def job_status(self, job_id: int) -> str | None:
        """The job's status, or None."""
        return self.store.status_of(job_id)

    def cancel_job(self, job_id: int) -> str | None:
        """Cancel a job from any process; returns cancelled, cancelling, its terminal status, or None."""
        status = self.store.cancel_job(job_id, now=self.clock.now())
        if status == JobState.CANCELLED:
            self._emit_admin(EventType.CANCELLED, job_id)
        return status

    def kill_job(self, job_id: int) -> str | None:
        """End a job whatever it is doing, from any process: a pending or paused one at once (``cancelled``),
        a running one by having its worker abandon the attempt now (``killing``); it wins over every
        other request. Otherwise returns the job's terminal status, or None."""
        status = self.store.kill_job(job_id, now=self.clock.now())
        if status == JobState.CANCELLED:
            self._emit_admin(EventType.CANCELLED, job_id)
        return status

    def pause_job(self, job_id: int) -> str | None:
        """Pause a job from any process; returns paused, pausing, its current status, or None."""
        status = self.store.pause_job(job_id, now=self.clock.now())
        if status == JobState.PAUSED:
            self._emit_admin(EventType.PAUSED, job_id)
        return status

    def resume_job(self, job_id: int) -> str | None:
        """Resume a paused job; returns pending (or its current status)."""
        status = self.store.resume_job(job_id, now=self.clock.now())
        if status == JobState.PENDING:
            self._emit_admin(EventType.RESUMED, job_id)
            self._notifier.announce()
        return status

    def retry_job(self, job_id: int) -> bool:
        """A failed or cancelled job back to pending now, its history kept."""
        took = self.store.retry_job(job_id, now=self.clock.now())
        if took:
            self._emit_admin(EventType.RETRIED, job_id)
            self._notifier.announce()
        return took

    def watch(self, job_id: int) -> JobWatch:
        """Watch a job for changes (PostgreSQL NOTIFY from any process, in-process events on both)."""
        self._notifier.start()
        return self._notifier.watch(job_id)

    def _wake_watchers(self, event: Mapping[str, Any]) -> None:
        # Every event of the process passes here: read a typed event's field, not the mapping.
        job_id = event.job_id if isinstance(event, Event) else event.get("job_id")
        if isinstance(job_id, int):
            self._notifier.signal(job_id)

    def _emit_admin(self, kind: EventType, job_id: int, **extra: Any) -> None:
        self.events.emit(Event.of(kind, job_id, **extra))

    # -- admin ------------------------------------------------------------------------------

    def discard_job(self, job_id: int, reason: str = "discarded by an operator") -> bool:
        """Force a job to failed, recording ``reason``; False if it had ended already (or does not exist).

        A pending (or retrying) or paused job fails at once; a running one is asked to end, and
        ends ``failed`` with a Discard entry whatever its attempt turns into.
        """
        state = self.store.discard_job(job_id, now=self.clock.now(), reason=reason)
        if state == JobState.FAILED:
            self._emit_admin(EventType.FAILED, job_id, error={"type": "Discard", "message": reason})
        return state in (JobState.FAILED, "discarding", "killing")

    def delete_job(self, job_id: int) -> bool:
        """Delete a terminal job with its checkpoint, progress and history; False if it is not terminal."""
        took = self.store.delete_job(job_id)
        if took:
            self._emit_admin(EventType.DELETED, job_id)
        return took

    def clear_completed(
        self,
        *,
        older_than: timedelta | float | datetime | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete completed jobs (optionally finished before ``older_than`` ago, of a type or queue)."""
        before = older_than_cutoff(older_than, self.clock.now())
        return self.store.clear(JobState.COMPLETED, finished_before=before, name=name, queue=queue)

    def clear_failed(
        self,
        *,
        older_than: timedelta | float | datetime | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete failed jobs (optionally older ones, of a type or queue)."""
        before = older_than_cutoff(older_than, self.clock.now())
        return self.store.clear(JobState.FAILED, finished_before=before, name=name, queue=queue)

    def retry_failed(self, *, name: str | None = None, queue: str | None = None) -> int:
        """Every failed job (of a type or queue) back to pending; returns how many."""
        count = self.store.retry_failed(now=self.clock.now(), name=name, queue=queue)
        if count:
            self._notifier.announce()
        return count

    def pause_queue(self, name: str) -> None:
        """Every worker everywhere stops claiming from queue ``name`` until it is resumed."""
        problem = name_problem("queue", name, MAX_QUEUE)
        if problem is not None:
            raise ValueError(problem)  # checked as enqueue checks it: the name is stored
        self.store.pause_queue(name, now=self.clock.now())

    def resume_queue(self, name: str) -> bool:
        """Let workers claim from queue ``name`` again."""
        resumed = self.store.resume_queue(name)
        self._notifier.announce()
        return resumed

    def paused_queues(self) -> list[str]:
        """The queues currently paused."""
        return self.store.paused_queues()

    def stats(self) -> dict[str, Any]:
        """Counts by status, queue and job type, the oldest due pending job's age, and the running count."""
        return self.store.stats(now=self.clock.now())

    def jobs(
        self, *, status: str | None = None, name: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[JobInfo]:
        """Jobs filtered by status, type and queue, newest first."""
        return [info_of(r) for r in self.store.list_jobs(status=status, name=name, queue=queue, limit=limit)]

    def job_types(self) -> dict[str, dict[str, Any]]:
        """Every registered job type with its options."""
        return {name: t.options.describe() for name, t in sorted(all_types().items())}

    def workers(self) -> list[WorkerRecord]:
        """Registered workers, live and dead, with their last heartbeat and running jobs."""
        return self.store.list_workers(rescue_after=self.settings.rescue_after)

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

    def on_change(self, change: Callable[[], None]) -> Callable[[], None]:
        """Call ``change()`` whenever jobs or queues may have changed, in this process or any other.

        A hint for live views (the dashboard): it fires on this process's events, on other
        processes' job changes (PostgreSQL NOTIFY) and on every commit to the database (SQLite's
        data_version, checked every 50 ms). ``change`` must be quick and must not raise; it runs
        on the notifier's and the events' threads. Returns the unsubscribe function.
        """
        unsubscribes = [
            self.events.subscribe(lambda _event: change()),
            self._notifier.on_wake(lambda _payload: change()),
            self._notifier.on_change(lambda _job_id: change()),
        ]
        self._notifier.start()

        def unsubscribe() -> None:
            for undo in unsubscribes:
                undo()

        return unsubscribe

    # -- the worker ----------------------------------------------------------------------------

    @property
    def worker(self) -> Worker:
        """This process's worker (created on first use)."""
        if self._worker is None:
            self._worker = Worker(self.store, self.settings, self.clock, all_types, self.events.emit, self._notifier)
        return self._worker

    def start(self) -> None:
        """Start worker threads in this process; returns at once."""
        self.worker.start()
        # Once the worker registered: no LISTEN connection is held while registration waits.
        self._notifier.start()

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
        return serve(self.worker, self.start, self.stop)

    def close(self) -> None:
        """Stop the worker if running and release every database connection."""
        self.stop(grace=0)
        self._notifier.stop()
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

"""JobQueue: the facade that wires settings, store, registry, events and the worker together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from jobkit import _job
from jobkit._clock import Clock, SystemClock
from jobkit._enqueue import args_json
from jobkit._events import EnqueueTracer, EventBus, Listener
from jobkit._handle import JobHandle, JobInfo, JobWatch
from jobkit._job import CallOptions
from jobkit._plugins import load_plugins, require_type
from jobkit._queue_admin import QueueAdmin
from jobkit._queue_schedules import QueueSchedules
from jobkit._registry import JobType, all_types, handler_type, register
from jobkit._runtime.direct import DirectConfig, DirectHandle, DirectRunner
from jobkit._runtime.gates import concurrency_keys, rate_keys
from jobkit._runtime.scheduler import Scheduler
from jobkit._runtime.signals import serve
from jobkit._runtime.worker import Worker
from jobkit._settings import Settings, load_settings
from jobkit._snapshots import info_of
from jobkit._store import ConcurrencyKey, NewJob, RateKey, UniqueJob, open_notifier, open_store
from jobkit._unique import UniqueOptions
from jobkit._vocabulary import Event, EventType, JobState
from jobkit._why import why_waiting
from jobkit.errors import ConfigurationError, EnqueueError

if TYPE_CHECKING:
    from sqlalchemy import Connection


log = logging.getLogger("jobkit")


class JobQueue(QueueAdmin, QueueSchedules):
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
        #: Set by a tracing integration (jobkit.contrib.otel): traces each enqueue, and its context
        #: is stored with the jobs. None (the default) costs the enqueue one test.
        self.enqueue_tracer: EnqueueTracer | None = None
        self._worker: Worker | None = None
        self._direct: DirectRunner | None = None  # queue.execute's threads, made on first use
        # One notifier for this queue: wake-ups for its worker and watches for its handles.
        self._notifier = open_notifier(self.store)
        self.events.tap(self._wake_watchers)

    # -- the process-wide queue ------------------------------------------------------------------

    #: Why the process-wide queue may not be created from settings alone, or None (the pytest plugin sets it).
    _implicit_refusal: ClassVar[str | None] = None

    @classmethod
    def instance(cls) -> JobQueue:
        """The process-wide queue, created from ``JOBKIT_*`` settings on first use."""
        with cls._instance_lock:
            if cls._instance is None:
                if cls._implicit_refusal is not None:
                    raise ConfigurationError(cls._implicit_refusal.format(url=load_settings().database_url))
                cls._instance = JobQueue()
            return cls._instance

    @classmethod
    def refuse_implicit_instance(cls, reason: str | None) -> None:
        """Make :meth:`instance` raise ``ConfigurationError(reason)`` rather than open the default database.

        ``reason`` may name the database it would have opened as ``{url}``; None allows it again.
        Explicit queues (``configure``, ``set_instance``) are not affected.
        """
        cls._implicit_refusal = reason

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
        rows = []
        for index, args in enumerate(args_list):
            text = args_json(options, args, index if len(args_list) > 1 else None, self.settings)
            rows.append(NewJob(options.name, text, queue, priority, run_at, options.max_retries))
        if self.enqueue_tracer is None:
            return self._insert(job_type, rows, now, run_at, connection)
        trace = self.enqueue_tracer.begin(options.name, queue, len(rows))
        for row in rows:
            row.trace_context = trace.context
        try:
            handles = self._insert(job_type, rows, now, run_at, connection)
        except BaseException as exc:
            trace.end([], exc)
            raise
        trace.end([h.id for h in handles if not h.duplicate], None)
        return handles

    def _insert(
        self, job_type: JobType, rows: list[NewJob], now: float, run_at: float, connection: Connection | None
    ) -> list[JobHandle]:
        options = job_type.options
        queue = rows[0].queue if rows else options.queue
        stored = [row.args for row in rows]
        keys, rates = concurrency_keys(options, stored), rate_keys(options, stored)
        if options.unique is not None:
            return self._enqueue_unique(options.unique, rows, now, connection, keys, rates)
        ids = self.store.enqueue(rows, now=now, connection=connection, keys=keys, rates=rates)
        self._notifier.announce(repr(run_at) if run_at > now else "", committed=connection is None)
        name = options.name
        for job_id in ids:  # built directly: this runs once per enqueued job
            self.events.emit(Event(EventType.ENQUEUED, job_id, {"name": name, "queue": queue}))
        return [JobHandle(job_id, self) for job_id in ids]

    def _enqueue_unique(
        self,
        unique: UniqueOptions,
        rows: list[NewJob],
        now: float,
        connection: Connection | None,
        keys: list[ConcurrencyKey] | None,
        rates: list[RateKey] | None = None,
    ) -> list[JobHandle]:
        """Enqueue unique jobs: each row takes its key, or its handle is the live job holding it (``duplicate``)."""
        keyed = [
            UniqueJob(
                row,
                unique.key(row.name, row.queue, row.args),
                unique.states,
                unique.on_conflict,
                unique.window,
                None if keys is None else keys[index],
                None if rates is None else rates[index],
            )
            for index, row in enumerate(rows)
        ]
        results = self.store.enqueue_unique(keyed, now=now, connection=connection)
        fresh = [row.run_at for row, result in zip(rows, results, strict=True) if not result.duplicate]
        if fresh:
            earliest = min(fresh)
            self._notifier.announce(repr(earliest) if earliest > now else "", committed=connection is None)
        for row, result in zip(rows, results, strict=True):
            if not result.duplicate:
                self.events.emit(Event(EventType.ENQUEUED, result.id, {"name": row.name, "queue": row.queue}))
        return [JobHandle(result.id, self, duplicate=result.duplicate) for result in results]

    def execute(self, job: type[_job.BaseJob[Any]] | str, args: Mapping[str, Any] | None = None) -> DirectHandle:
        """Run a job now on a thread of this process, beside queued jobs, without storing it (nor retrying it).

        Arguments are validated as at enqueue; the handle has ``result()``, ``stream()``, ``cancel()``.

        Example::

            handle = queue.execute("web-scraping", {"url": "https://example.org"})
            print(handle.result(timeout=30))
        """
        name = job if isinstance(job, str) else job.job_type().name
        job_type = require_type(name, warn=log.warning)
        if args is not None and not isinstance(args, Mapping):
            raise EnqueueError(f"{name}: args must be a mapping of arguments, got {type(args).__name__}")
        text = args_json(job_type.options, dict(args or {}), None, self.settings)
        if self._direct is None:
            self._direct = DirectRunner(DirectConfig(self.settings.concurrency), self.clock)
        return self._direct.submit(job_type, text)

    def handle(self, job_id: int) -> JobHandle:
        """A handle for an existing job id (from any process)."""
        return JobHandle(job_id, self)

    # -- handles (the HandleBackend protocol) --------------------------------------------------

    def job_info(self, job_id: int) -> JobInfo | None:
        """The job's current snapshot, or None."""
        record = self.store.get(job_id)
        return None if record is None else info_of(record)

    def job_why(self, job_id: int) -> str | None:
        """Why the job is waiting, in one line (see ``jobkit._why``), or None when it does not exist."""
        # Eligibility is judged by the database's clock on the real clock (the later of it and ours, so
        # a clock's resolution never calls a job due now "scheduled"), by the fake one in tests.
        now = max(self.store.now(), self.clock.now()) if isinstance(self.clock, SystemClock) else self.clock.now()
        return why_waiting(self.store, job_id, now=now, rescue_after=self.settings.rescue_after)

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

    def register_handler(self, name: str, handler: Any, **options: Any) -> None:
        """Register a job type from a plain callable or an object with ``process(args)`` (and ``on_error``)."""
        register(handler_type(name, handler, **options))

    def enqueue(self, name: str, args: dict[str, Any] | None = None, **call: Any) -> JobHandle:
        """Enqueue a job by its registered name (for plugin handlers); ``call`` takes the ``set()`` options."""
        job_type = require_type(name, warn=log.warning)
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

    def observe(self, observer: Listener) -> Callable[[], None]:
        """Call ``observer(event)`` in the emitting thread for every event of this process (metrics,
        tracing): no thread of its own, so it must be quick; ``event.job`` and ``event.ran`` tell it
        about the attempt. Returns a function that removes it."""
        return self.events.tap(observer)

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

    @property
    def scheduler(self) -> Scheduler:
        """This process's cron scheduler (its worker's); tests call ``queue.scheduler.run_once()``."""
        return self.worker.scheduler

    # -- the worker ----------------------------------------------------------------------------

    @property
    def worker(self) -> Worker:
        """This process's worker (created on first use)."""
        if self._worker is None:
            # Every process that runs a worker sees the plugins' job types, not only `jobkit worker`.
            load_plugins(warn=log.warning)
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
        if self._direct is not None:
            self._direct.stop()
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

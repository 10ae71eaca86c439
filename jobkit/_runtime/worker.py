"""The worker: a supervisor that builds the runtime's services, starts and stops them in order.

Below it, each service owns its threads (``start()`` / ``stop()``) and has a ``run_once()``:

- :class:`~jobkit._runtime.ledger.Ledger` - the jobs held (prefetched or in a slot), the room to claim;
- :class:`~jobkit._runtime.producer.Producer` - claims into that room (wake-ups, prefetch);
- :class:`~jobkit._runtime.pool.ExecutorPool` - runs held jobs (threads, async loop, deadlines);
- :class:`~jobkit._runtime.completer.Completer` - writes what the policy makes of each outcome;
- :class:`~jobkit._runtime.lease.Lease` - registration, heartbeat, fencing, the control loop;
- :class:`~jobkit._runtime.maintenance.Maintenance` - rescue, prune, housekeeping, their timers;
- :class:`~jobkit._runtime.scheduler.Scheduler` - cron: fires due schedules (every worker ticks).

Wake-ups from other processes come from the queue's notifier (``jobkit._store.Notifier``), to
which the producer subscribes; a worker made without one makes its own, and starts and stops it.

The worker itself only wires them, and answers for the whole: ``fatal`` / ``exit_code`` /
``fatal_reason`` when it decided to stop on its own, ``request_stop``, ``stuck_threads``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from jobkit._clock import Clock, SystemClock
from jobkit._payload import dumps
from jobkit._registry import JobType
from jobkit._runtime.completer import Completer
from jobkit._runtime.lease import Lease, LeaseConfig
from jobkit._runtime.ledger import PREFETCH_MAX_WAIT, Ledger
from jobkit._runtime.lifecycle import EXIT_NO_SCHEMA, EXIT_STUCK, Lifecycle
from jobkit._runtime.maintenance import Maintenance, MaintenanceConfig
from jobkit._runtime.pool import ExecutorPool, PoolConfig
from jobkit._runtime.producer import Producer, ProducerConfig
from jobkit._runtime.reporter import StoreReports
from jobkit._runtime.scheduler import Scheduler, SchedulerConfig
from jobkit._settings import Settings
from jobkit._store import Notifier, Rescued, Store, open_notifier
from jobkit._vocabulary import CancelReason, Event

__all__ = ["EXIT_NO_SCHEMA", "EXIT_STUCK", "PREFETCH_MAX_WAIT", "Worker"]

Emit = Callable[[Event], None]


class Worker:
    """Runs jobs from the store; use through :class:`jobkit.JobQueue`."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        types: Callable[[], dict[str, JobType]],
        emit: Emit,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.types = types
        self.emit = emit
        self.queues = list(settings.queues) if settings.queues else None
        # Results, progress and checkpoints are stored as strict JSON within the queue's limits.
        dump: Callable[[Any], str] = partial(
            dumps, max_depth=settings.max_payload_depth, max_bytes=settings.max_payload_bytes
        )
        # Wake-ups from other processes: the queue's notifier, or one of its own that it then runs.
        self._owns_notifier = notifier is None
        self.notifier = open_notifier(store) if notifier is None else notifier
        self.lifecycle = Lifecycle()
        self.ledger = Ledger(settings.concurrency, prefetch=settings.prefetch, queue_slots=settings.queue_slots)
        self.completer = Completer(
            store,
            clock,
            emit,
            settings.completion_batch,
            settings.completion_flush,
            on_requeued=lambda run_at: self.notify(repr(run_at)),
            max_crashes=settings.max_crashes,
        )
        self.pool = ExecutorPool(
            PoolConfig.from_settings(settings),
            self.ledger,
            self.completer,
            self.lifecycle,
            clock=clock,
            types=types,
            emit=emit,
            dump=dump,
            reports=StoreReports(store),
            worker_id=self._worker_id,
            on_freed=self._freed,
        )
        self.producer = Producer(
            ProducerConfig.from_settings(settings),
            store,
            self.ledger,
            self.lifecycle,
            self.completer,
            clock=clock,
            types=types,
            worker_id=self._worker_id,
            dispatch=self.pool.dispatch,
            requeue=partial(self.pool.withdraw, reason=CancelReason.REQUEUE),
            may_claim=lambda: not self.lease.fenced,
            notifier=self.notifier,
        )
        self.lease = Lease(
            LeaseConfig.from_settings(settings),
            store,
            self.ledger,
            self.lifecycle,
            self.completer,
            clock=clock,
            interrupt=self.pool.interrupt,
            requeue_stale=self.producer.requeue_stale,
            on_held_again=self.producer.wake,
            names=lambda: sorted(types()),
            pool_report=self.pool.report,
        )
        self.maintenance = Maintenance(
            MaintenanceConfig.from_settings(settings),
            store,
            clock=clock,
            emit=emit,
            worker_id=self._worker_id,
            busy=lambda: len(self.ledger) > 0,
            on_rescued=self.producer.wake,
        )
        self.scheduler = Scheduler(
            SchedulerConfig.from_settings(settings),
            store,
            # Fire times by the database's clock on the real clock; a fake clock decides them itself.
            now=store.now if isinstance(clock, SystemClock) else clock.now,
            types=types,
            emit=emit,
            # Wakes this process's producer and rings other processes' doorbells (SQLite); on
            # PostgreSQL the fire's transaction sent NOTIFY itself.
            on_enqueued=lambda: self.notifier.announce(""),
        )
        self.lifecycle.on_change(self.producer.wake)
        self._hurry = threading.Event()
        self._started = False

    # -- what the worker answers for -------------------------------------------------------------------

    @property
    def id(self) -> str:
        """This worker's id (fresh when its row was lost and it registered again)."""
        return self.lease.id

    @property
    def concurrency(self) -> int:
        """Jobs run at once; setting it takes effect at the next claim (a test runs one job per ``run_once``)."""
        return self.ledger.slots

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"concurrency must be at least 1, got {value}")
        self.ledger.slots = value

    @property
    def running_count(self) -> int:
        """Jobs currently running in a slot (prefetched jobs waiting for a slot are not counted)."""
        return self.ledger.executing

    @property
    def peak_running(self) -> int:
        """The most jobs that ever ran at once in this worker (never above ``concurrency``)."""
        return self.ledger.peak

    @property
    def claims(self) -> int:
        """Claims issued so far (each one statement), for the benchmarks and operators."""
        return self.producer.claims

    @property
    def stuck_threads(self) -> int:
        """Executor threads abandoned to a job that ignores its token and still running it."""
        return self.ledger.stuck

    @property
    def fatal(self) -> threading.Event:
        """Set when the worker decided on its own to stop (no schema, too many stuck threads).

        ``exit_code`` and ``fatal_reason`` say why. It stops claiming; ``JobQueue.run`` then stops it.
        """
        return self.lifecycle.fatal

    @property
    def exit_code(self) -> int:
        """The exit status a worker that stopped on its own asks for (0 otherwise)."""
        return self.lifecycle.exit_code

    @property
    def fatal_reason(self) -> str:
        """Why the worker stopped on its own ("" otherwise)."""
        return self.lifecycle.fatal_reason

    # -- lifecycle -----------------------------------------------------------------------------------

    def notify(self, payload: str = "") -> None:
        """Something may be claimable: a job was enqueued (payload may carry its run time)."""
        self.producer.notify(payload)

    def start(self) -> None:
        """Register, then start every service; returns at once."""
        if self._started:
            return
        self._started = True
        if not self.lease.register():
            self._started = False
            return  # stopped (or failed for good) while registering
        self.completer.start()
        self.pool.start()
        self.lease.start()
        self.maintenance.start()
        self.scheduler.start()
        if self._owns_notifier:
            self.notifier.start()
        self.producer.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running jobs finish within ``grace``, then cancel and release what is left."""
        if not self._started:
            self.pool.stop()  # run_once may have started the watchdog and the progress flusher
            self.lease.deregister()
            return
        grace = self.settings.shutdown_grace if grace is None else grace
        end = time.monotonic() + grace
        # Wake-ups are useless once we stop claiming; an own notifier's LISTEN loop may take a
        # moment to notice, so it stops beside the drain.
        notifier_stop = self._stop_own_notifier()
        # A claim may be in flight: let the producer dispatch what it took before the pool looks
        # at the slots, or those jobs would stay 'running' under a stopped worker until rescue.
        self.producer.stop(until=end)
        self.pool.drain(until=end, hurry=self._hurry)
        self.completer.stop()
        self.lease.stop()
        self.pool.stop()
        self.maintenance.stop()
        self.scheduler.stop()
        self.producer.join()
        if notifier_stop is not None:
            notifier_stop.join(timeout=5)
        self.lease.deregister()
        self._started = False

    def hurry(self) -> None:
        """Cut the shutdown grace short (a second SIGTERM/SIGINT)."""
        self._hurry.set()

    def request_stop(self) -> None:
        """Ask a worker that is still starting (registering) to give up; safe from a signal handler."""
        self.lifecycle.request_stop()

    # -- one pass, in the caller's thread ------------------------------------------------------------

    def run_once(self) -> int:
        """Claim up to ``concurrency`` due jobs and run them here, one after another; returns how many ran."""
        self.lease.register()
        return self.pool.run_once(self.producer.claim(self.concurrency))

    def rescue_once(self) -> list[Rescued]:
        """One rescue pass: jobs of workers whose heartbeat is older than ``rescue_after`` go back or fail."""
        return self.maintenance.rescue_once()

    def prune_once(self) -> int:
        """One prune pass: delete terminal jobs older than ``retention``."""
        return self.maintenance.prune_once()

    def housekeep_once(self) -> bool:
        """One housekeeping pass while idle (SQLite WAL checkpoint); returns whether it ran."""
        return self.maintenance.housekeep_once()

    # -- wiring --------------------------------------------------------------------------------------

    def _worker_id(self) -> str:
        return self.lease.id

    def _freed(self) -> None:
        self.producer.freed()

    def _stop_own_notifier(self) -> threading.Thread | None:
        if not self._owns_notifier:
            return None  # the queue's: it serves the queue's handles too, and the queue stops it
        thread = threading.Thread(target=self.notifier.stop, name="jobkit-notifier-stop", daemon=True)
        thread.start()
        return thread

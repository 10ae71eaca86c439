"""The producer: claims due jobs into the ledger's room and hands them to the pool.

One thread claims; it sleeps until woken (an enqueue in this process or, through the queue's
notifier, in another, a slot freed while jobs turn over), until the next scheduled job is due,
or for ``poll_interval`` at most. It claims only while the worker holds its lease and has not
gone fatal, and backs off while the database is away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from jobkit._clock import Clock
from jobkit._registry import JobType
from jobkit._runtime.completer import Completer
from jobkit._runtime.ledger import PREFETCH_MAX_WAIT, HeldJob, Ledger
from jobkit._runtime.lifecycle import EXIT_NO_SCHEMA, Lifecycle, no_schema
from jobkit._runtime.outcome import first_line
from jobkit._settings import Settings
from jobkit._store import ClaimedJob, Notifier, Store, is_missing_schema

log = logging.getLogger("jobkit.worker")

#: With rate-limited job types, how often at most a short claim looks again: a full window frees
#: itself as time passes, with no event to wake the producer.
RATE_RECHECK = 1.0


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How often to poll, whether to prefetch, and which queues to claim from (None: all)."""

    poll_interval: float = 5.0
    prefetch: bool = True
    queues: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.poll_interval <= 3600:
            raise ValueError(f"poll_interval must be more than 0 and at most 3600 seconds, got {self.poll_interval}")
        if self.queues is not None and not self.queues:
            raise ValueError("queues must name at least one queue, or be None for all")

    @classmethod
    def from_settings(cls, settings: Settings) -> ProducerConfig:
        """The producer's part of the queue's settings."""
        return cls(settings.poll_interval, settings.prefetch, tuple(settings.queues) if settings.queues else None)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim pass did."""

    #: False when there was no room, or the worker may not claim now: no claim was issued.
    tried: bool = False
    #: Jobs claimed and dispatched.
    jobs: int = 0
    #: True when it got as many as it asked for: there may be more due now.
    more: bool = False


class Producer:
    """Claims jobs for the pool; ``run_once`` is one claim pass, the thread loops over it."""

    def __init__(
        self,
        config: ProducerConfig,
        store: Store,
        ledger: Ledger,
        lifecycle: Lifecycle,
        completer: Completer,
        *,
        clock: Clock,
        types: Callable[[], dict[str, JobType]],
        worker_id: Callable[[], str],
        dispatch: Callable[[ClaimedJob], None],
        requeue: Callable[[HeldJob], object],
        may_claim: Callable[[], bool],
        notifier: Notifier,
    ) -> None:
        self.config = config
        self.store = store
        self.ledger = ledger
        self.lifecycle = lifecycle
        self.completer = completer
        self.clock = clock
        self.types = types
        self.worker_id = worker_id
        #: Hands a held job on to the pool, and a prefetched one back to the queue.
        self.dispatch = dispatch
        self.requeue = requeue
        self._queues = list(config.queues) if config.queues else None
        #: False while the worker must not claim (fenced: its lease may have been taken).
        self.may_claim = may_claim
        #: Claims issued so far (each one statement), for the benchmarks and operators.
        self.claims = 0
        self._wake = threading.Event()
        # The worker's own stop flag: once the worker is stopping, nothing more is claimed.
        self._stop = lifecycle.stopping
        self._more = True
        #: Whether the last claim had job types with a concurrency key (a freed slot may free a key).
        self._has_keyed = False
        #: Whether the last claim had job types with a rate limit (their windows free up with time).
        self._has_limited = False
        self._next_due: float | None = None
        self._thread: threading.Thread | None = None
        #: The one wake-up source across processes (its owner starts and stops it; see worker.py).
        self.notifier = notifier
        self._unsubscribe: Callable[[], None] | None = None

    # -- wake-ups -------------------------------------------------------------------------------------

    def notify(self, payload: str = "") -> None:
        """Something may be claimable: a job was enqueued (payload may carry its run time)."""
        if payload:
            try:
                run_at = float(payload)
            except ValueError:
                run_at = None
            if run_at is not None and run_at > self.clock.now():
                self._next_due = run_at if self._next_due is None else min(self._next_due, run_at)
        self._wake.set()

    def wake(self) -> None:
        """Look for jobs now (a rescue put some back, the lease is held again, the worker is stopping)."""
        self._wake.set()

    def freed(self) -> None:
        """A job left its slot: claim again at once if jobs are turning over and there is room.

        With job types that have a concurrency key, a freed slot may also have freed a key that
        pending jobs wait for, so it is worth a claim even when the last one came back short.
        """
        if (self._more or self._has_keyed) and not self._stop.is_set() and self.ledger.room(more=True) > 0:
            self._wake.set()

    def requeue_stale(self) -> list[int]:
        """Hand prefetched jobs that waited too long for a slot back to the queue; returns their ids.

        The jobs in the slots turned out long: a prefetched job should not wait behind them while
        another worker could run it. The lease's control loop calls this on every tick.
        """
        stale = self.ledger.stale(PREFETCH_MAX_WAIT)
        for held in stale:
            self.requeue(held)
        return [held.job.id for held in stale]

    # -- the service ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the notifier's wake-ups and start the claim thread."""
        self._unsubscribe = self.notifier.on_wake(self.notify)
        self._thread = threading.Thread(target=self._loop, name="jobkit-producer", daemon=True)
        self._thread.start()

    def stop(self, until: float) -> None:
        """Stop claiming (the worker is stopping); a claim in flight is dispatched before this returns.

        Waits for the claim thread until ``until`` (monotonic) at most.
        """
        self._stop.set()
        self._wake.set()
        # Wake-ups are useless once we stop claiming (on SQLite this frees the doorbell at once).
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, until - time.monotonic()))

    def join(self) -> None:
        """Wait for the claim thread to end (after :meth:`stop`)."""
        if self._thread is not None:
            self._thread.join(timeout=5)

    def claim(self, count: int, names: list[str] | None = None) -> list[ClaimedJob]:
        """Claim up to ``count`` due jobs of the types ``names`` (default: every registered type).

        The producer's one store call to claim.
        """
        names = sorted(self.types()) if names is None else names
        limited, reschedule = self._limited()
        return self.store.claim(
            worker=self.worker_id(),
            limit=count,
            names=names,
            queues=self._queues,
            now=self.clock.now(),
            keyed=self._keyed(),
            limited=limited,
            reschedule=reschedule,
        )

    def _limited(self) -> tuple[list[str], list[str]]:
        """The types the gated claim takes, and those of them that reschedule when their window is full.

        Gated: types with a rate limit, several concurrency keys or an ordered key. When any type
        has several or ordered keys, every keyed type is gated too, so each key's holders are
        counted in one place, whichever type holds it.
        """
        types = self.types()
        options = {name: t.options for name, t in types.items()}
        every_key = any(o.gated_by_keys for o in options.values())
        limited = sorted(
            name
            for name, o in options.items()
            if o.rate_limit is not None or o.gated_by_keys or (every_key and o.concurrency_key is not None)
        )
        self._has_limited = any(o.rate_limit is not None for o in options.values())
        return limited, [name for name in limited if options[name].on_limit == "reschedule"]

    def _keyed(self) -> list[str]:
        """The registered types with a concurrency key: the store claims their jobs within each key's limit."""
        keyed = sorted(name for name, job_type in self.types().items() if job_type.options.concurrency_key is not None)
        self._has_keyed = bool(keyed)
        return keyed

    def _claim_in(self, queue: str, count: int, names: list[str]) -> list[ClaimedJob]:
        limited, reschedule = self._limited()
        return self.store.claim(
            worker=self.worker_id(),
            limit=count,
            names=names,
            queues=[queue],
            now=self.clock.now(),
            keyed=self._keyed(),
            limited=limited,
            reschedule=reschedule,
        )

    def run_once(self, *, woken: bool = True) -> Claimed:
        """One claim pass into the ledger's room; ``woken``: something changed since the last pass.

        Errors reach the caller (the loop backs off on them). When the queue ran dry after a
        wake-up, it also learns when the next scheduled job is due, so that job starts on time.
        """
        if self.ledger.queue_slots is not None:
            rooms = {queue: self.ledger.room_in(queue) for queue in self.ledger.queue_slots}
            room = sum(rooms.values())
        else:
            rooms, room = {}, self.ledger.room(more=self._more)
        if room <= 0 or not self.may_claim() or self.lifecycle.fatal.is_set():
            return Claimed()
        self.claims += 1
        if not self.config.prefetch:
            # The set-up for jobs that may kill their worker: write the outcomes already held before
            # taking the next job, so a crash in it cannot take a finished job's completion along.
            self.completer.wait_idle(1.0)
        # The registered types, sorted once per pass for the claim and, if it runs, the next-run lookup.
        names = sorted(self.types())
        if rooms:
            # One claim per queue with room, into that queue's own slots, in its own priority order.
            jobs = []
            for queue, free in rooms.items():
                if free > 0:
                    jobs.extend(self._claim_in(queue, free, names))
        else:
            jobs = self.claim(room, names)
        for job in jobs:
            try:
                self.dispatch(job)
            except Exception:
                # A bug of ours on one row must not strand the rest of the batch; the control loop
                # gives this one back (a stale hand-back, or an orphan release after ORPHAN_GRACE).
                log.exception("job %s: could not be dispatched; it will be given back", job.id)
        self._more = len(jobs) == room
        if woken and not self._more and not (jobs and self.store.notifies_enqueues):
            # Something changed and the queue ran dry: learn when the next scheduled job is due,
            # so it starts on time rather than at the next poll. On PostgreSQL a wake that found
            # due jobs skips it: every enqueue's NOTIFY already carries its run time, and the query
            # would run beside the job just dispatched, on the path of its start-up latency.
            self._next_due = self._safe_next_run_at(names)
        if self._has_limited and not self._more:
            recheck = self.clock.now() + RATE_RECHECK
            self._next_due = recheck if self._next_due is None else min(self._next_due, recheck)
        return Claimed(True, len(jobs), self._more)

    def _safe_next_run_at(self, names: list[str]) -> float | None:
        try:
            return self.store.next_run_at(names=names, queues=self._queues, now=self.clock.now())
        except Exception as exc:
            log.debug("cannot read the next run time (%s); polling covers it", exc)
            return self._next_due

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._produce()
                return
            except Exception:
                # The producer is the only thread that claims: it must outlive any bug of its own.
                log.exception("producer failed; restarting it")
                self._stop.wait(0.5)

    def _produce(self) -> None:
        logged = ""
        delay = 0.05
        woken = True
        while not self._stop.is_set():
            self._wake.clear()
            timeout = self.config.poll_interval
            try:
                claimed = self.run_once(woken=woken)
            except Exception as exc:
                if is_missing_schema(exc):
                    self.lifecycle.go_fatal(EXIT_NO_SCHEMA, no_schema(self.store.safe_url))
                    continue
                line = first_line(exc)
                if line != logged:
                    log.warning("cannot claim jobs (%s); retrying with backoff", line)
                    logged = line
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            if logged and claimed.tried:
                log.warning("claiming again")
                logged, delay = "", 0.05
            if claimed.more and claimed.jobs:
                continue
            due = False
            if self._next_due is not None:
                until_due = self._next_due - self.clock.now()
                due = until_due <= timeout
                timeout = max(0.0, min(timeout, until_due))
                if timeout == 0.0:
                    self._next_due = None
            # A scheduled job falling due counts as a wake-up: after claiming it, look for the next one.
            woken = self._wake.wait(timeout) or due

"""The worker's lease: registration, the heartbeat that renews it, self-fencing, and the control loop.

Two threads. The heartbeat renews the whole process's lease every ``heartbeat_interval``; when
it cannot, the worker fences itself one interval before anyone may rescue its jobs (it stops
claiming and cancels them). The control loop, every ``cancel_check_interval``, matches the jobs
the ledger holds against what the database says this worker holds: it delivers operators'
requests (cancel, pause, discard, kill), cancels attempts whose lease was lost, and gives back
jobs that are held in the database but run nowhere.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from jobkit._clock import Clock
from jobkit._runtime.completer import Completer
from jobkit._runtime.ledger import HeldJob, Ledger
from jobkit._runtime.lifecycle import EXIT_NO_SCHEMA, Lifecycle, no_schema
from jobkit._runtime.outcome import first_line
from jobkit._settings import Settings
from jobkit._store import Store, Transition, is_missing_schema
from jobkit._vocabulary import CancelReason, TransitionKind

log = logging.getLogger("jobkit.worker")

#: Seconds a job must look orphaned (held in the database, run nowhere) before it is given back.
ORPHAN_GRACE = 2.0


def new_worker_id() -> str:
    """host-pid-random: fresh on every start, so a restarted process never inherits old leases."""
    return f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """The heartbeat's pace, how long a silent worker keeps its jobs, and the control loop's pace."""

    heartbeat_interval: float = 5.0
    rescue_after: float = 30.0
    cancel_check_interval: float = 1.0
    concurrency: int = 5
    queues: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.heartbeat_interval > 0 or not self.cancel_check_interval > 0:
            raise ValueError("heartbeat_interval and cancel_check_interval must be more than 0 seconds")
        if self.rescue_after <= self.heartbeat_interval:
            raise ValueError(
                f"rescue_after ({self.rescue_after}s) must be longer than heartbeat_interval ({self.heartbeat_interval}s)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> LeaseConfig:
        """The lease's part of the queue's settings."""
        queues = tuple(settings.queues) if settings.queues else None
        return cls(
            settings.heartbeat_interval,
            settings.rescue_after,
            settings.cancel_check_interval,
            settings.concurrency,
            queues,
        )


@dataclass(slots=True)
class Reconciled:
    """What one control pass did, by job id."""

    requeued: list[int] = field(default_factory=list)
    #: (job id, request) delivered to a running job.
    requested: list[tuple[int, str]] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    orphans_released: list[int] = field(default_factory=list)


class Lease:
    """This process's worker row and lease; ``run_once`` is one heartbeat and one control pass."""

    def __init__(
        self,
        config: LeaseConfig,
        store: Store,
        ledger: Ledger,
        lifecycle: Lifecycle,
        completer: Completer,
        *,
        clock: Clock,
        interrupt: Callable[[HeldJob, CancelReason], None],
        requeue_stale: Callable[[], list[int]],
        on_held_again: Callable[[], None],
        names: Callable[[], list[str]] | None = None,
        pool_report: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.config = config
        self.store = store
        #: The worker's pool and children as JSON, written with every heartbeat.
        self.pool_report = pool_report
        self.ledger = ledger
        self.lifecycle = lifecycle
        self.completer = completer
        self.clock = clock
        self.interrupt = interrupt
        self.requeue_stale = requeue_stale
        #: Called when the lease is held again after a fence: the producer may claim again.
        self.on_held_again = on_held_again
        #: The job types this worker runs, recorded in its row (``handle.why()`` reads them).
        self.names = names
        self.id = new_worker_id()
        self.registered = False
        #: True while the worker may have lost its lease: it does not claim.
        self.fenced = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._orphans: dict[tuple[int, int], float] = {}
        self._renewed = 0.0
        self._beat_failing = False
        self._db_held = 0
        self._bad_requests: set[tuple[int, int]] = set()

    # -- registration ---------------------------------------------------------------------------------

    def register(self) -> bool:
        """Insert the worker row, retrying while the database is away; False when stopped or fatal meanwhile."""
        if self.registered:
            return True
        delay = 0.1
        logged = ""
        stopping = self.lifecycle.stopping
        config = self.config
        queues = list(config.queues) if config.queues else None
        while not stopping.is_set():
            try:
                self.store.register_worker(
                    self.id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    queues=queues,
                    concurrency=config.concurrency,
                    names=None if self.names is None else self.names(),
                )
                break
            except Exception as exc:
                if is_missing_schema(exc):
                    self.lifecycle.go_fatal(EXIT_NO_SCHEMA, no_schema(self.store.safe_url))
                    return False
                line = first_line(exc)
                if line != logged:  # one line per distinct problem, not an SQL dump every few seconds
                    log.warning("cannot register worker (%s); retrying", line)
                    logged = line
                if stopping.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)
        else:
            return False
        self.registered = True
        return True

    def deregister(self) -> None:
        """Mark the worker row stopped (best effort)."""
        if not self.registered:
            return
        try:
            self.store.mark_stopped(self.id)
        except Exception as exc:
            log.warning("best-effort write failed: %s", exc)
        self.registered = False

    # -- the service ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat and control threads."""
        self._stop.clear()
        for target, name in ((self._heartbeat_loop, "jobkit-heartbeat"), (self._control_loop, "jobkit-control")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop both threads; waits for the control loop only (a heartbeat blocked in the database ends alone)."""
        self._stop.set()
        for thread in self._threads:
            if thread.name == "jobkit-control":
                thread.join(timeout=5)
        self._threads.clear()

    def run_once(self) -> tuple[int | None, Reconciled]:
        """One heartbeat and one control pass: (jobs the database says we hold or None if the row is gone, the pass)."""
        held = self.beat_once()
        return held, self.reconcile_once()

    # -- heartbeat ------------------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        # Its own thread (and, in the store, its own connection): a big payload or a busy completer
        # must never delay the one write that keeps this process's jobs from being rescued.
        self._renewed = time.monotonic()
        while not self._stop.wait(self.config.heartbeat_interval):
            try:
                self.beat_once()
            except Exception:
                log.exception("heartbeat step failed; continuing")

    def beat_once(self) -> int | None:
        """Renew the lease; fence when it may have expired; re-register when our row is gone.

        Returns how many running jobs the database says this worker holds (None: no row, or no answer).
        """
        config = self.config
        sent = time.monotonic()
        try:
            held = self.store.heartbeat(self.id, stuck=self.ledger.stuck, pool=self.pool_report())
        except Exception as exc:
            if not self._beat_failing:
                log.warning("heartbeat failed (%s); running jobs continue", first_line(exc))
                self._beat_failing = True
            # Rescuers compare the heartbeat the database stamped with rescue_after. That stamp is
            # no earlier than the moment it was sent, so timing from the send and fencing one
            # heartbeat early stops our jobs before anyone else may take them.
            silent = time.monotonic() - self._renewed
            if silent > config.rescue_after - config.heartbeat_interval and not self.fenced:
                self.fence(f"heartbeat not renewed for {silent:.1f}s")
            return None
        if self._beat_failing:
            log.warning("heartbeat restored")
            self._beat_failing = False
        if sent - self._renewed > config.rescue_after:
            # Frozen (SIGSTOP, a stalled VM) or blocked: our jobs may have been rescued
            # meanwhile; the reconciliation cancels exactly those.
            log.warning("heartbeat renewed after %.1fs, longer than rescue_after", sent - self._renewed)
        if held is None:
            self.fence("worker row was marked stopped or removed")
            self.id = new_worker_id()
            self.registered = False
            self.register()
        self._renewed = sent
        self._db_held = held or 0
        if self.fenced:
            self.fenced = False
            self.on_held_again()
        return held

    def fence(self, why: str) -> None:
        """Our lease may have been taken: stop claiming and cancel our own jobs."""
        held = self.ledger.snapshot()
        log.error("self-fencing (%s): cancelling %d running jobs", why, len(held))
        self.fenced = True
        for job in held.values():
            self.interrupt(job, CancelReason.LEASE_LOST)

    # -- control --------------------------------------------------------------------------------------

    def _control_loop(self) -> None:
        while not self._stop.wait(self.config.cancel_check_interval):
            try:
                self.reconcile_once()
            except Exception:
                # Cancel requests and orphan releases depend on this thread: it must outlive a bug.
                log.exception("control loop step failed; continuing")

    def reconcile_once(self) -> Reconciled:
        """Hand back stale prefetched jobs, then reconcile held jobs (cancel requests, lost leases, orphans)."""
        done = Reconciled(requeued=self.requeue_stale())
        if len(self.ledger) or self._db_held:
            self._reconcile(done)
        else:
            self._orphans.clear()
        return done

    def _reconcile(self, done: Reconciled) -> None:
        """Match the jobs we run against the jobs the database says we hold, by lease."""
        snapshot = self.ledger.snapshot()
        # A job leaves the ledger only after it was handed to the completer, so when the completer
        # is idle now, every job missing from the snapshot has been written before the read below.
        settled = self.completer.wait_idle(0)
        try:
            held = self.store.held_jobs(self.id)
        except Exception:
            return
        leases = {job_id: lease for job_id, lease, _ in held}
        for job_id, running in snapshot.items():
            lost = leases.get(job_id) != running.job.lease and self.ledger.holds(running)
            if lost and not running.token.cancelled:
                log.warning("job %s: lease lost (rescued elsewhere); cancelling this attempt", job_id)
                if self._deliver(running, CancelReason.LEASE_LOST):
                    done.lost.append(job_id)
        for job_id, lease, request in held:
            slot = self.ledger.get(job_id)
            if slot is None or request is None or slot.job.lease != lease:
                continue
            try:
                reason = CancelReason.parse(request)
            except ValueError as exc:
                # A damaged request names nothing we know: say so against the job (once), never guess "cancel".
                if (job_id, lease) not in self._bad_requests:
                    self._bad_requests.add((job_id, lease))
                    log.error("job %s: %s; the request is ignored", job_id, exc)
                continue
            if self._deliver(slot, reason):
                done.requested.append((job_id, request))
        if settled:
            self._release_orphans([(job_id, lease) for job_id, lease, _ in held if job_id not in snapshot], done)

    def _deliver(self, held: HeldJob, reason: CancelReason) -> bool:
        # One job whose interruption fails (a bug, a hostile token callback) must not keep the
        # requests of the others from being delivered.
        try:
            self.interrupt(held, reason)
        except Exception:
            log.exception("job %s: could not deliver %s; continuing with the others", held.job.id, reason)
            return False
        return True

    def _release_orphans(self, candidates: list[tuple[int, int]], done: Reconciled) -> None:
        # A claim can commit while its reply is lost (the connection cut at COMMIT): the database
        # says we hold the job, nobody runs it, and our heartbeat keeps rescue away. A job claimed
        # just now looks the same for an instant, so only one seen for ORPHAN_GRACE is given back.
        now = time.monotonic()
        seen = {key: self._orphans.get(key, now) for key in candidates}
        self._orphans = seen
        for (job_id, lease), first in list(seen.items()):
            if now - first >= ORPHAN_GRACE and self.ledger.get(job_id) is None:
                log.warning("job %s is held by this worker but runs nowhere; releasing it", job_id)
                release = Transition(TransitionKind.RELEASE, job_id, self.id, lease, {"delay": 0.0})
                try:
                    self.store.transition(release, now=self.clock.now())
                except Exception as exc:
                    log.warning("best-effort write failed: %s", exc)
                del self._orphans[(job_id, lease)]
                done.orphans_released.append(job_id)

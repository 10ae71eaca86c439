"""The worker: claims jobs into free slots, runs them, heartbeats, fences itself and shuts down gracefully.

Threads: one producer (claims), ``concurrency`` executor threads for sync jobs,
one event loop for async jobs, the heartbeat, one control loop (cancel requests,
reconciliation), one watchdog (timeouts, abandoning jobs that ignore their token),
the completer, the change watcher and the maintenance timers.

Nothing a job does and no row the worker reads may take a slot or a service thread
away: every loop survives its own errors, a job that ignores its token past
``kill_grace`` is recorded and its thread abandoned (replaced, counted as stuck),
and past ``max_stuck_threads`` the worker stops claiming and asks to be restarted.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from jobkit._cancel import CancelToken
from jobkit._clock import Clock
from jobkit._payload import dumps
from jobkit._registry import JobType
from jobkit._runtime.completer import Completer, Finished, job_log
from jobkit._runtime.executor import Prepared, prepare, run_async, run_sync
from jobkit._runtime.outcome import Cancelled, Crashed, Failed, Outcome, error_entry
from jobkit._runtime.reporter import JobReporter
from jobkit._runtime.timers import Timers
from jobkit._settings import Settings
from jobkit._store import ClaimedJob, Store, Transition, is_missing_schema
from jobkit._store import workers as worker_sql
from jobkit._store.listen import ChangeWatcher
from jobkit.errors import Discard, JobTimeout, WorkerLost

log = logging.getLogger("jobkit.worker")

#: Prefetch: while jobs turn over quickly the worker claims a few more than it has free slots, so a
#: slot that frees up starts its next job at once instead of after a claim round trip. The buffer is
#: sized so that a prefetched job waits about PREFETCH_WAIT seconds for its slot at the current rate
#: of completions (measured over PREFETCH_WINDOW), and never more than ``concurrency`` jobs; slow jobs
#: get no prefetch at all. A prefetched job that still has not started after PREFETCH_MAX_WAIT
#: (the jobs in the slots turned out long) is handed back to the queue for other workers.
PREFETCH_WAIT = 0.05
PREFETCH_WINDOW = 0.25
PREFETCH_MAX_WAIT = 1.0

#: Seconds between idle housekeeping passes (SQLite WAL checkpoints).
HOUSEKEEP_INTERVAL = 30.0

#: Seconds a job must look orphaned (held in the database, run nowhere) before it is given back.
ORPHAN_GRACE = 2.0

#: Exit codes a worker that stops on its own asks its process to exit with.
EXIT_NO_SCHEMA = 2
EXIT_STUCK = 4

Emit = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Running:
    """One job in a slot."""

    job: ClaimedJob
    job_type: JobType | None
    token: CancelToken
    reporter: JobReporter
    claimed: float = field(default_factory=time.monotonic)
    #: Set (under the worker's lock) when an executor takes the job into a slot.
    started: bool = False
    #: Set (under the worker's lock) when the job was taken back before it started.
    withdrawn: bool = False
    #: True while the job holds one of the ``concurrency`` slots (cleared exactly once).
    in_slot: bool = False
    #: Set (under the worker's lock) when the job ignored its token past kill_grace and was ended
    #: without it: its thread is left to finish alone and exits when it does.
    abandoned: bool = False
    #: monotonic time the job took its slot.
    began: float = 0.0
    prepared: Prepared | None = None


def new_worker_id() -> str:
    """host-pid-random: fresh on every start, so a restarted process never inherits old leases."""
    return f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


class Worker:
    """Runs jobs from the store; use through :class:`jobkit.JobQueue`."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        types: Callable[[], dict[str, JobType]],
        emit: Emit,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.types = types
        self.emit = emit
        self.id = new_worker_id()
        # Results, progress and checkpoints are stored as strict JSON within the queue's limits.
        self._dump: Callable[[Any], str] = partial(
            dumps, max_depth=settings.max_payload_depth, max_bytes=settings.max_payload_bytes
        )
        self.concurrency = settings.concurrency
        self.queues = list(settings.queues) if settings.queues else None
        self.completer = Completer(
            store,
            clock,
            emit,
            settings.completion_batch,
            settings.completion_flush,
            on_requeued=lambda run_at: self.notify(repr(run_at)),
            max_crashes=settings.max_crashes,
        )
        self._running: dict[int, Running] = {}
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._control_stop = threading.Event()
        self._maybe_more = True
        self._next_due: float | None = None
        self._fenced = False
        self._registered = False
        self._started = False
        self._threads: list[threading.Thread] = []
        # Claimed jobs wait here for an executor thread; more than ``concurrency`` only when prefetching.
        self._work: queue.SimpleQueue[Running | None] = queue.SimpleQueue()
        # Jobs in a slot, sync and async together; never above ``concurrency`` (see _begin).
        self._executing = 0
        self._finishes: collections.deque[float] = collections.deque(
            maxlen=max(1, round(self.concurrency * PREFETCH_WINDOW / PREFETCH_WAIT))
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._orphans: dict[tuple[int, int], float] = {}
        self._renewed = 0.0
        self._next_beat = 0.0
        self._beat_failing = False
        # The watchdog's deadlines: (monotonic time, seq, job, what to do then: "timeout" or "abandon").
        self._deadlines: list[tuple[float, int, Running, str]] = []
        self._deadline_seq = 0
        self._deadlines_cv = threading.Condition()
        self._db_held = 0
        self._exec_threads = 0
        #: Executor threads abandoned to a job that ignores its token and still running it.
        self.stuck_threads = 0
        #: Set when the worker decided on its own to stop (no schema, too many stuck threads);
        #: ``exit_code`` and ``fatal_reason`` say why. It stops claiming; ``JobQueue.run`` then stops it.
        self.fatal = threading.Event()
        self.exit_code = 0
        self.fatal_reason = ""
        self._timers = Timers()
        self._watcher = ChangeWatcher(store, self.notify)
        #: The most jobs that ever ran at once in this worker (never above ``concurrency``).
        self.peak_running = 0
        #: Claims issued so far (each one statement), for the benchmarks and operators.
        self.claims = 0

    # -- public surface ---------------------------------------------------------------------

    @property
    def running_count(self) -> int:
        """Jobs currently running in a slot (prefetched jobs waiting for a slot are not counted)."""
        return self._executing

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

    def start(self) -> None:
        """Register, then start every service thread; returns at once."""
        if self._started:
            return
        self._started = True
        self._register()
        if not self._registered:
            self._started = False
            return  # stopped (or failed for good) while registering
        self.completer.start()
        for _ in range(self.concurrency):
            self._spawn_executor()
        self._spawn(self._heartbeat_loop, "jobkit-heartbeat")
        self._spawn(self._control_loop, "jobkit-control")
        self._spawn(self._timeout_loop, "jobkit-watchdog")
        self._timers.every(self.settings.rescue_interval, self.rescue_once, "rescue", first_in=0.5)
        self._timers.every(self.settings.prune_interval, self.prune_once, "prune", first_in=5.0)
        self._timers.every(HOUSEKEEP_INTERVAL, self.housekeep_once, "housekeep")
        self._timers.start()
        self._watcher.start()
        self._spawn(self._producer_loop, "jobkit-producer")

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running jobs finish within ``grace``, then cancel and release what is left."""
        if not self._started:
            self._deregister()
            return
        grace = self.settings.shutdown_grace if grace is None else grace
        self._stopping.set()
        self._wake.set()
        end = time.monotonic() + grace
        # Wake-ups are useless once we stop claiming; the LISTEN loop may take a second to notice.
        watcher_stop = threading.Thread(target=self._watcher.stop, name="jobkit-watcher-stop", daemon=True)
        watcher_stop.start()
        # A claim may be in flight: let the producer dispatch what it took before we look at the
        # slots, or those jobs would stay 'running' under a stopped worker until rescue.
        for thread in self._threads:
            if thread.name == "jobkit-producer":
                thread.join(timeout=max(0.0, end - time.monotonic()))
        # Prefetched jobs that never started go back to the queue at once.
        for running in list(self._running.values()):
            self._withdraw(running, "shutdown")
        with self._lock:
            while self._running and not self._hurry.is_set() and time.monotonic() < end:
                self._lock.wait(min(0.1, max(0.0, end - time.monotonic())))
            leftover = list(self._running.values())
        for running in leftover:
            self._interrupt(running, "shutdown")
        if leftover:
            log.info("shutdown: cancelled %d unfinished jobs; waiting briefly for them to stop", len(leftover))
            with self._lock:
                self._lock.wait_for(lambda: not self._running, timeout=0.25 if self._hurry.is_set() else 1.0)
                stuck = list(self._running.values())
                self._running.clear()
            for running in stuck:
                # It outlived the grace and its token: a crash, so a job that wedges every worker
                # it meets ends failed after max_crashes instead of going round for ever.
                log.warning("job %s %s did not stop within the shutdown grace; counted as a crash", *_ids(running))
                error = WorkerLost(f"did not stop within the shutdown grace of worker {self.id}")
                entry = {**error_entry(error, running.job.attempt, self.clock.now()), "worker": self.id}
                crash = Crashed(entry | {"reason": "shutdown"}, attempt_spent=False)
                self.completer.submit(self._finished_item(running, crash))
        self.completer.stop()
        self._control_stop.set()
        with self._deadlines_cv:
            self._deadlines_cv.notify_all()
        for _ in range(self.concurrency):
            self._work.put(None)
        self._timers.stop()
        watcher_stop.join(timeout=5)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            if thread.name.startswith(("jobkit-producer", "jobkit-control", "jobkit-watchdog", "jobkit-async")):
                thread.join(timeout=5)
        self._deregister()
        self._started = False

    def hurry(self) -> None:
        """Cut the shutdown grace short (a second SIGTERM/SIGINT)."""
        self._hurry.set()

    def run_once(self) -> int:
        """Claim up to ``concurrency`` due jobs and run them here, one after another; returns how many ran."""
        self._register()
        jobs = self.store.claim(self.id, self.concurrency, sorted(self.types()), self.queues, self.clock.now())
        for job in jobs:
            running = self._make_running(job)
            running.started, running.began = True, time.monotonic()
            self._emit_started(job)
            try:
                prepared = self._prepare(running)
            except Exception as exc:
                prepared = Failed(error_entry(exc, job.attempt, self.clock.now()), retryable=False)
            timer: threading.Timer | None = None
            if isinstance(prepared, Failed):
                outcome: Outcome = prepared
            else:
                timeout = prepared.job_type.options.timeout
                if timeout is not None:
                    timer = threading.Timer(timeout, running.token.cancel, args=("timeout",))
                    timer.daemon = True
                    timer.start()
                outcome = run_sync(prepared, self.clock, self._dump)
            if timer is not None:
                timer.cancel()
            self.completer.write([self._finished_item(running, outcome)])
        return len(jobs)

    def rescue_once(self) -> list[dict[str, Any]]:
        """One rescue pass: jobs of workers whose heartbeat is older than ``rescue_after`` go back or fail."""
        # Never our own jobs: a busy moment of this process must not lose its live jobs. On SQLite
        # the store's observer judges other workers' heartbeats by watching them change.
        rescued = worker_sql.rescue(
            self.store,
            self.settings.rescue_after,
            self.settings.max_crashes,
            self.clock.now(),
            exclude_worker=self.id,
            observer=self.store.heartbeats,
            margin=self._observation_margin(),
        )
        for item in rescued:
            log.warning("rescued job %s from lost worker %s -> %s", item["job_id"], item["worker"], item["status"])
            self.emit({"type": "rescued", **item})
        if rescued:
            self._wake.set()
        return rescued

    def _observation_margin(self) -> float:
        # A heartbeat seen changing on one rescue pass changed at most one pass earlier; judging it a
        # little early by that much keeps rescue within rescue_after + one interval, while the
        # silence a worker is surely judged by stays above a live worker's beat gap.
        settings = self.settings
        return min(
            settings.heartbeat_interval,
            settings.rescue_interval,
            (settings.rescue_after - settings.heartbeat_interval) / 2,
        )

    def prune_once(self) -> int:
        """One prune pass: delete terminal jobs older than ``retention``."""
        return worker_sql.prune(self.store, self.clock.now() - self.settings.retention)

    def housekeep_once(self) -> bool:
        """One housekeeping pass while idle: fold SQLite's WAL back and truncate it; returns whether it ran.

        Skipped while jobs run (a checkpoint competes with their writes); a no-op on PostgreSQL.
        """
        if self._running:
            return False
        return self.store.checkpoint_wal()

    # -- registration and heartbeats ------------------------------------------------------------

    def _register(self) -> None:
        if self._registered:
            return
        delay = 0.1
        logged = ""
        while not self._stopping.is_set():
            try:
                worker_sql.register_worker(
                    self.store, self.id, socket.gethostname(), os.getpid(), self.queues, self.concurrency
                )
                break
            except Exception as exc:
                if is_missing_schema(exc):
                    self._go_fatal(EXIT_NO_SCHEMA, _no_schema(self.store))
                    return
                line = _first_line(exc)
                if line != logged:  # one line per distinct problem, not an SQL dump every few seconds
                    log.warning("cannot register worker (%s); retrying", line)
                    logged = line
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, 5.0)
        else:
            return
        self._registered = True

    def request_stop(self) -> None:
        """Ask a worker that is still starting (registering) to give up; safe from a signal handler."""
        self._stopping.set()
        self._wake.set()

    def _go_fatal(self, code: int, reason: str) -> None:
        """Stop claiming for good and tell the supervisor (``JobQueue.run``) to stop us with ``code``."""
        if self.fatal.is_set():
            return
        log.error("%s; the worker stops (exit code %d)", reason, code)
        self.exit_code = code
        self.fatal_reason = reason
        self.fatal.set()
        self._wake.set()

    def _deregister(self) -> None:
        if self._registered:
            self._safe(lambda: worker_sql.mark_stopped(self.store, self.id))
            self._registered = False

    def _heartbeat_loop(self) -> None:
        # Its own thread (and, in the store, its own connection): a big payload or a busy completer
        # must never delay the one write that keeps this process's jobs from being rescued.
        self._renewed = time.monotonic()
        while not self._control_stop.wait(self.settings.heartbeat_interval):
            try:
                self._beat()
            except Exception:
                log.exception("heartbeat step failed; continuing")

    def _beat(self) -> None:
        """Renew the lease; fence when it may have expired; re-register when our row is gone."""
        settings = self.settings
        sent = time.monotonic()
        try:
            held = worker_sql.heartbeat_held(self.store, self.id, stuck=self.stuck_threads)
        except Exception as exc:
            if not self._beat_failing:
                log.warning("heartbeat failed (%s); running jobs continue", _first_line(exc))
                self._beat_failing = True
            # Rescuers compare the heartbeat the database stamped with rescue_after. That stamp is
            # no earlier than the moment it was sent, so timing from the send and fencing one
            # heartbeat early stops our jobs before anyone else may take them.
            silent = time.monotonic() - self._renewed
            if silent > settings.rescue_after - settings.heartbeat_interval and not self._fenced:
                self._fence(f"heartbeat not renewed for {silent:.1f}s")
            return
        if self._beat_failing:
            log.warning("heartbeat restored")
            self._beat_failing = False
        if sent - self._renewed > settings.rescue_after:
            # Frozen (SIGSTOP, a stalled VM) or blocked: our jobs may have been rescued
            # meanwhile; the reconciliation cancels exactly those.
            log.warning("heartbeat renewed after %.1fs, longer than rescue_after", sent - self._renewed)
        if held is None:
            self._fence("worker row was marked stopped or removed")
            self.id = new_worker_id()
            self._registered = False
            self._register()
        self._renewed = sent
        self._db_held = held or 0
        if self._fenced:
            self._fenced = False
            self._wake.set()

    def _control_loop(self) -> None:
        while not self._control_stop.wait(self.settings.cancel_check_interval):
            try:
                self._control_step()
            except Exception:
                # Cancel requests and orphan releases depend on this thread: it must outlive a bug.
                log.exception("control loop step failed; continuing")

    def _control_step(self) -> None:
        """Hand back stale prefetched jobs, then reconcile held jobs (cancel requests, lost leases, orphans)."""
        self._requeue_stale_prefetch(time.monotonic())
        if self._running or self._db_held:
            self._reconcile()
        else:
            self._orphans.clear()

    def _reconcile(self) -> None:
        """Match the jobs we run against the jobs the database says we hold, by lease."""
        snapshot = dict(self._running)
        # A job leaves its slot only after it was handed to the completer, so when the completer
        # is idle now, every job missing from the snapshot has been written before the read below.
        settled = self.completer.wait_idle(0)
        try:
            held = worker_sql.held_jobs(self.store, self.id)
        except Exception:
            return
        leases = {job_id: lease for job_id, lease, _ in held}
        for job_id, running in snapshot.items():
            lost = leases.get(job_id) != running.job.lease and self._running.get(job_id) is running
            if lost and not running.token.cancelled:
                log.warning("job %s: lease lost (rescued elsewhere); cancelling this attempt", job_id)
                self._interrupt(running, "lease_lost")
        for job_id, lease, request in held:
            slot = self._running.get(job_id)
            if slot is not None and request is not None and slot.job.lease == lease:
                self._interrupt(slot, request)
        if settled:
            self._release_orphans([(job_id, lease) for job_id, lease, _ in held if job_id not in snapshot])

    def _release_orphans(self, candidates: list[tuple[int, int]]) -> None:
        # A claim can commit while its reply is lost (the connection cut at COMMIT): the database
        # says we hold the job, nobody runs it, and our heartbeat keeps rescue away. A job claimed
        # just now looks the same for an instant, so only one seen for ORPHAN_GRACE is given back.
        now = time.monotonic()
        seen = {key: self._orphans.get(key, now) for key in candidates}
        self._orphans = seen
        for (job_id, lease), first in list(seen.items()):
            if now - first >= ORPHAN_GRACE and job_id not in self._running:
                log.warning("job %s is held by this worker but runs nowhere; releasing it", job_id)
                release = Transition("release", job_id, self.id, lease, {"delay": 0.0})
                self._safe(lambda: self.store.transition(release, self.clock.now()))
                del self._orphans[(job_id, lease)]

    def _fence(self, why: str) -> None:
        """Our lease may have been taken: stop claiming and cancel our own jobs."""
        log.error("self-fencing (%s): cancelling %d running jobs", why, len(self._running))
        self._fenced = True
        for running in list(self._running.values()):
            self._interrupt(running, "lease_lost")

    # -- producing ----------------------------------------------------------------------------

    def _producer_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._produce()
                return
            except Exception:
                # The producer is the only thread that claims: it must outlive any bug of its own.
                log.exception("producer failed; restarting it")
                self._stopping.wait(0.5)

    def _produce(self) -> None:
        logged = ""
        delay = 0.05
        woken = True
        while not self._stopping.is_set():
            self._wake.clear()
            timeout = self.settings.poll_interval
            room = self._claim_room()
            if room > 0 and not self._fenced and not self.fatal.is_set():
                self.claims += 1
                if not self.settings.prefetch:
                    # The set-up for jobs that may kill their worker: write the outcomes already held before
                    # taking the next job, so a crash in it cannot take a finished job's completion along.
                    self.completer.wait_idle(1.0)
                try:
                    names = sorted(self.types())
                    jobs = self.store.claim(self.id, room, names, self.queues, self.clock.now())
                except Exception as exc:
                    if is_missing_schema(exc):
                        self._go_fatal(EXIT_NO_SCHEMA, _no_schema(self.store))
                        continue
                    line = _first_line(exc)
                    if line != logged:
                        log.warning("cannot claim jobs (%s); retrying with backoff", line)
                        logged = line
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if logged:
                    log.warning("claiming again")
                    logged, delay = "", 0.05
                for job in jobs:
                    self._dispatch(job)
                self._maybe_more = len(jobs) == room
                if self._maybe_more and jobs:
                    continue
                if woken and not self._maybe_more and not (jobs and self.store.is_postgres):
                    # Something changed and the queue ran dry: learn when the next scheduled
                    # job is due, so it starts on time rather than at the next poll. On
                    # PostgreSQL a wake that found due jobs skips it: every enqueue's NOTIFY
                    # already carries its run time, and the query would run beside the job
                    # just dispatched, on the path of its start-up latency.
                    self._next_due = self._safe_next_run_at(names)
            due = False
            if self._next_due is not None:
                until_due = self._next_due - self.clock.now()
                due = until_due <= timeout
                timeout = max(0.0, min(timeout, until_due))
                if timeout == 0.0:
                    self._next_due = None
            # A scheduled job falling due counts as a wake-up: after claiming it, look for the next one.
            woken = self._wake.wait(timeout) or due

    def _claim_room(self) -> int:
        """How many jobs to claim now (0: wait), from the free slots and the prefetch buffer."""
        held = len(self._running)
        target = self._prefetch_target() if self._maybe_more and self.settings.prefetch else 0
        room = self.concurrency + target - held
        if room <= 0:
            return 0
        if held < self.concurrency:
            return room  # fewer jobs held than slots: a slot would sit idle, claim at once
        # Every free slot has a prefetched job: top the buffer up in batches, not one job at a time.
        return room if room >= max(1, (self.concurrency + target) // 2) else 0

    def _prefetch_target(self) -> int:
        """Prefetched jobs worth holding: about PREFETCH_WAIT seconds of completions at the recent rate."""
        finishes = self._finishes
        if not finishes:
            return 0
        horizon = time.monotonic() - PREFETCH_WINDOW
        if finishes[0] >= horizon:
            count = len(finishes)
        else:
            count = 0
            for at in reversed(finishes):
                if at < horizon:
                    break
                count += 1
        return min(self.concurrency, int(count * PREFETCH_WAIT / PREFETCH_WINDOW))

    def _requeue_stale_prefetch(self, now: float) -> None:
        # The jobs in the slots turned out long: a prefetched job should not wait behind them
        # while another worker could run it.
        for running in list(self._running.values()):
            if not running.started and now - running.claimed > PREFETCH_MAX_WAIT:
                self._withdraw(running, "requeue")

    def _safe_next_run_at(self, names: list[str]) -> float | None:
        try:
            return self.store.next_run_at(names, self.queues, self.clock.now())
        except Exception as exc:
            log.debug("cannot read the next run time (%s); polling covers it", exc)
            return self._next_due

    def _make_running(self, job: ClaimedJob) -> Running:
        token = CancelToken()
        return Running(
            job,
            self.types().get(job.name),
            token,
            JobReporter(self.store, job, token, self.clock, self.emit, self._dump),
        )

    def _emit_started(self, job: ClaimedJob) -> None:
        self.emit({"type": "started", "job_id": job.id, "name": job.name, "attempt": job.attempt})
        if job_log.isEnabledFor(logging.INFO):
            job_log.info(
                "job %s %s started (queue %s, attempt %d/%d, worker %s)",
                job.id,
                job.name,
                job.queue,
                job.attempt,
                job.max_retries + 1,
                job.worker_id,
            )

    def _prepare(self, running: Running) -> Prepared | Failed:
        job = running.job
        if running.job_type is None:
            error = LookupError(f"no job type named {job.name!r} is registered in this worker")
            return Failed(error_entry(error, job.attempt, self.clock.now()), retryable=False)
        return prepare(job, running.job_type, running.token, running.reporter, self.clock)

    def _dispatch(self, job: ClaimedJob) -> None:
        """Hold a claimed job and queue it for an executor; a job that cannot be prepared fails at once."""
        running = self._make_running(job)
        with self._lock:
            self._running[job.id] = running
        try:
            prepared = self._prepare(running)
        except Exception as exc:
            # prepare() already turns a bad row into a failure; this is the net under it, so one
            # row can never stop the producer (and with it every worker that claims the row next).
            log.exception("job %s: could not be prepared", job.id)
            prepared = Failed(error_entry(exc, job.attempt, self.clock.now()), retryable=False)
        if isinstance(prepared, Failed):
            self._emit_started(job)
            self._done(running, prepared)
            return
        running.prepared = prepared
        self._work.put(running)

    def _interrupt(self, running: Running, reason: str) -> None:
        """Fire a held job's token; a job that has not started yet is given its outcome at once.

        A started job that ignores its token is ended without it after kill_grace (``kill`` and
        ``discard``: at once), except at shutdown, where the shutdown grace decides.
        """
        if self._withdraw(running, reason):
            return
        fired = running.token.cancel(reason)
        if reason in ("kill", "discard"):
            # At once, also when an earlier request (a cancel, a timeout) already fired the token.
            self._deadline(running, 0.0, "abandon")
        elif fired and reason != "shutdown":
            self._deadline(running, self.settings.kill_grace, "abandon")

    def _withdraw(self, running: Running, reason: str) -> bool:
        """End a held job that has not started with ``Cancelled(reason)``; False if it started already."""
        with self._lock:
            if running.started or running.withdrawn or self._running.get(running.job.id) is not running:
                return False
            running.withdrawn = True
        running.token.cancel(reason)
        self._done(running, Cancelled(running.token.reason or reason))
        return True

    def _begin(self, running: Running) -> bool:
        """Move a held job into a slot, waiting for one; False when it was withdrawn meanwhile."""
        with self._lock:
            # Sync jobs alone never wait here (there are ``concurrency`` executor threads); async
            # jobs hold a slot without holding a thread, so with them a thread may have to wait.
            while self._executing >= self.concurrency and not running.withdrawn:
                self._lock.wait()
            if running.withdrawn or self._running.get(running.job.id) is not running:
                return False
            running.started = True
            running.in_slot = True
            running.began = time.monotonic()
            self._executing += 1
            if self._executing > self.peak_running:
                self.peak_running = self._executing
        self._emit_started(running.job)
        prepared = running.prepared
        assert prepared is not None
        timeout = prepared.job_type.options.timeout
        if timeout is not None:
            self._deadline(running, timeout, "timeout")
        return True

    def _deadline(self, running: Running, after: float, action: str) -> None:
        with self._deadlines_cv:
            self._deadline_seq += 1
            heapq.heappush(self._deadlines, (time.monotonic() + after, self._deadline_seq, running, action))
            self._deadlines_cv.notify()

    def _async_done(self, running: Running, future: Future[Outcome]) -> None:
        try:
            outcome = future.result()
        except BaseException as exc:
            # run_async never raises; this is a cancelled future or a bug: the job still gets an outcome.
            outcome = self._thread_lost(running, exc)
        self._done(running, outcome)

    def _thread_lost(self, running: Running, exc: BaseException) -> Crashed:
        error = WorkerLost(f"the thread running it failed: {type(exc).__name__}: {_first_line(exc)}")
        error.__cause__ = exc
        return Crashed(error_entry(error, running.job.attempt, self.clock.now()))

    def _spawn_executor(self) -> None:
        self._exec_threads += 1
        self._spawn(self._executor_loop, f"jobkit-exec-{self._exec_threads}")

    def _executor_loop(self) -> None:
        while True:
            running = self._work.get()
            if running is None:
                return
            try:
                if not self._run_one(running):
                    return  # this thread was abandoned to its job; a replacement took its place
            except BaseException as exc:
                # Nothing a job does reaches here (run_sync never raises); a bug of ours does. The
                # job is recorded as a crash and a fresh thread takes this one's place.
                log.exception("executor thread failed on job %s; replacing the thread", running.job.id)
                self._done(running, self._thread_lost(running, exc))
                self._spawn_executor()
                return

    def _run_one(self, running: Running) -> bool:
        """Run one held job in this thread (or hand an async one to the loop); False: the thread must exit."""
        if not self._begin(running):
            return True
        prepared = running.prepared
        assert prepared is not None
        if prepared.job_type.is_async:
            future = asyncio.run_coroutine_threadsafe(run_async(prepared, self.clock, self._dump), self._event_loop())
            future.add_done_callback(partial(self._async_done, running))
            return True
        outcome = run_sync(prepared, self.clock, self._dump)
        self._done(running, outcome)
        with self._lock:
            if not running.abandoned:
                return True
            self.stuck_threads -= 1
        log.warning("job %s %s returned at last; its abandoned thread exits", *_ids(running))
        return False

    def _done(self, running: Running, outcome: Outcome) -> bool:
        """Free the job's slot and hand its outcome to the completer; False when it had ended already."""
        with self._lock:
            taken = self._end_locked(running, outcome)
        if self._maybe_more and not self._stopping.is_set() and self._claim_room() > 0:
            self._wake.set()
        return taken

    def _end_locked(self, running: Running, outcome: Outcome) -> bool:
        # The first ending wins: a job abandoned past kill_grace may still return later, and a
        # shutdown may have written a job off; neither may free the slot or write twice.
        if running.in_slot:
            running.in_slot = False
            self._executing -= 1
            self._lock.notify_all()
        if self._running.get(running.job.id) is not running:
            return False
        del self._running[running.job.id]
        self.completer.submit(self._finished_item(running, outcome))
        self._finishes.append(time.monotonic())
        self._lock.notify_all()
        return True

    def _abandon(self, running: Running) -> None:
        """End a job that ignored its token past kill_grace: record it now, give its slot to a new thread."""
        with self._lock:
            if not running.in_slot or self._running.get(running.job.id) is not running:
                return  # it ended meanwhile
            thread_bound = not (running.job_type is not None and running.job_type.is_async)
            running.abandoned = True
            if thread_bound:
                self.stuck_threads += 1
            self._end_locked(running, self._abandoned_outcome(running))
            stuck = self.stuck_threads
        log.warning(
            "job %s %s ignored its token (%s) for kill_grace %.1fs; recorded and %s",
            *_ids(running),
            running.token.reason,
            self.settings.kill_grace,
            f"its thread abandoned ({stuck} stuck)" if thread_bound else "its task left behind",
        )
        if thread_bound:
            self._spawn_executor()
            if stuck > self.settings.max_stuck_threads:
                self._go_fatal(
                    EXIT_STUCK,
                    f"{stuck} executor threads are stuck in jobs that ignore their token "
                    f"(max_stuck_threads={self.settings.max_stuck_threads}); restart this worker",
                )
        if self._maybe_more and not self._stopping.is_set():
            self._wake.set()

    def _abandoned_outcome(self, running: Running) -> Outcome:
        job, reason = running.job, running.token.reason or "cancel"
        now = self.clock.now()
        if reason == "timeout":
            timeout = running.job_type.options.timeout if running.job_type else None
            error = JobTimeout(
                f"{job.name}: exceeded its timeout of {timeout}s and did not stop within kill_grace "
                f"({self.settings.kill_grace}s); its thread was abandoned"
            )
            return Failed(error_entry(error, job.attempt, now), retryable=True)
        if reason == "discard":
            return Failed(error_entry(Discard("discarded by an operator while running"), job.attempt, now), False)
        return Cancelled(reason)

    def _finished_item(self, running: Running, outcome: Outcome) -> Finished:
        options = running.job_type.options if running.job_type else None
        backoff = options.backoff_seconds if options else (lambda attempt: 0.0)
        ran = time.monotonic() - running.began if running.started else None
        return Finished(running.job, outcome, backoff, running.reporter.take_pending(), ran)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._loop = loop
                self._spawn(loop.run_forever, "jobkit-async")
            return self._loop

    def _timeout_loop(self) -> None:
        """The watchdog: fires tokens at timeouts and ends jobs that ignore their token past kill_grace."""
        while not self._control_stop.is_set():
            with self._deadlines_cv:
                now = time.monotonic()
                due: list[tuple[Running, str]] = []
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, running, action = heapq.heappop(self._deadlines)
                    due.append((running, action))
                if not due:
                    self._deadlines_cv.wait(self._deadlines[0][0] - now if self._deadlines else None)
                    continue
            for running, action in due:
                try:
                    self._on_deadline(running, action)
                except Exception:
                    log.exception("watchdog: job %s: %s failed; continuing", running.job.id, action)

    def _on_deadline(self, running: Running, action: str) -> None:
        if not running.in_slot or self._running.get(running.job.id) is not running:
            return  # ended in time
        if action == "timeout":
            if running.token.cancel("timeout"):
                timeout = running.job_type.options.timeout if running.job_type else None
                log.warning("job %s %s exceeded its timeout of %ss; cancelling it", *_ids(running), timeout)
                self._deadline(running, self.settings.kill_grace, "abandon")
        elif running.token.reason != "shutdown":
            self._abandon(running)

    # -- helpers ------------------------------------------------------------------------------

    def _spawn(self, target: Callable[[], Any], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    @staticmethod
    def _safe(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:
            log.warning("best-effort write failed: %s", exc)


def _ids(running: Running) -> tuple[int, str]:
    return running.job.id, running.job.name


def _first_line(exc: BaseException) -> str:
    try:
        text = str(exc).strip()
    except Exception:
        return type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _no_schema(store: Store) -> str:
    return f"the database at {store.safe_url} has no jobkit tables: run `jobkit db upgrade`"

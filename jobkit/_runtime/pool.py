"""The executor pool: runs held jobs in slots and hands every ending to the completer exactly once.

Threads: ``concurrency`` executor threads for sync jobs, one asyncio loop for async jobs, and
the deadline watchdog (timeouts; jobs that ignore their token past ``kill_grace``). Nothing a
job does takes a slot away for good: a job that ignores its token past kill_grace is recorded
and its thread abandoned (replaced, counted as stuck); past ``max_stuck_threads`` the worker
goes fatal and asks to be restarted. ``run_once`` runs claimed jobs in the caller's thread
through the same ledger, slots, deadlines and completer (``Worker.run_once``, fake-clock and
inline tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from jobkit._cancel import CancelToken
from jobkit._clock import Clock
from jobkit._registry import JobType
from jobkit._runtime.completer import Completer, Finished, job_log
from jobkit._runtime.deadlines import Action, Deadlines
from jobkit._runtime.executor import Prepared, abandoned, prepare, run_async, run_sync
from jobkit._runtime.isolation import Isolation
from jobkit._runtime.ledger import HeldJob, Ledger
from jobkit._runtime.lifecycle import EXIT_STUCK, Lifecycle
from jobkit._runtime.looplag import LoopWatch
from jobkit._runtime.outcome import Cancelled, Crashed, Failed, Outcome, error_entry, first_line
from jobkit._runtime.procpool import ProcessConfig
from jobkit._runtime.reporter import Flusher, JobReporter, ReportWrites
from jobkit._settings import Settings
from jobkit._store import ClaimedJob
from jobkit._vocabulary import CancelReason, Event, EventType
from jobkit.errors import WorkerLost

log = logging.getLogger("jobkit.worker")

Emit = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """How many jobs run at once and how long a job that ignores its token is waited for."""

    concurrency: int
    kill_grace: float = 5.0
    max_stuck_threads: int = 4
    #: Where jobs without an ``isolation`` option run: "threads" or "processes".
    pool: str = "threads"
    processes: ProcessConfig = field(default_factory=ProcessConfig)
    loop_lag_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if not 0 <= self.kill_grace <= 3600:
            raise ValueError(f"kill_grace must be 0 to 3600 seconds, got {self.kill_grace}")
        if self.max_stuck_threads < 0:
            raise ValueError(f"max_stuck_threads must be >= 0, got {self.max_stuck_threads}")
        if self.pool not in ("threads", "processes"):
            raise ValueError(f"pool must be 'threads' or 'processes', got {self.pool!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolConfig:
        """The pool's part of the queue's settings."""
        processes = ProcessConfig(
            settings.max_tasks_per_child,
            settings.max_memory_per_child,
            settings.max_payload_depth,
            settings.max_payload_bytes,
        )
        return cls(
            settings.concurrency,
            settings.kill_grace,
            settings.max_stuck_threads,
            settings.pool,
            processes,
            settings.loop_lag_threshold,
        )


class ExecutorPool:
    """Executor threads, the async loop and the deadline watchdog over the ledger's slots."""

    def __init__(
        self,
        config: PoolConfig,
        ledger: Ledger,
        completer: Completer,
        lifecycle: Lifecycle,
        *,
        clock: Clock,
        types: Callable[[], dict[str, JobType]],
        emit: Emit,
        dump: Callable[[Any], str],
        reports: ReportWrites,
        worker_id: Callable[[], str],
        on_freed: Callable[[], None],
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.completer = completer
        self.lifecycle = lifecycle
        self.clock = clock
        self.types = types
        self.emit = emit
        self.dump = dump
        self.reports = reports
        self.worker_id = worker_id
        #: Called when a job left its slot: the producer may have room to claim again.
        self.on_freed = on_freed
        self.deadlines = Deadlines(self._on_deadline)
        self.flusher = Flusher()
        # Prepared jobs wait here for an executor thread; more than ``concurrency`` only when prefetching.
        self._work: queue.SimpleQueue[HeldJob | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        #: Watches the async loop for jobs that block it (made with the loop).
        self.loop_watch: LoopWatch | None = None
        self._lock = threading.Lock()
        self._spawned = 0
        self._started = False
        #: Process-isolated jobs and the children that run them (made on the first such job).
        self.isolation = Isolation(config.pool, config.processes, config.concurrency, types)

    # -- the service ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the executor threads and the watchdog."""
        self.deadlines.start()
        self._started = True
        for _ in range(self.config.concurrency):
            self._spawn_executor()
        if self.isolation.default_process:
            # A processes worker will need its children: start them now, beside the first claims.
            self.isolation.pool().warm(self.config.concurrency)

    def stop(self) -> None:
        """Stop the executor threads (each after its current job), the async loop and the watchdog."""
        self.deadlines.stop()
        with self._lock:
            loop, loop_thread = self._loop, self._loop_thread
        if self._started:
            # One per live idle executor: a thread abandoned to its job exits on its own when it returns.
            self._started = False
            for _ in range(self.config.concurrency):
                self._work.put(None)
        if self.loop_watch is not None:
            self.loop_watch.stop()
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if loop_thread is not None:
            loop_thread.join(timeout=5)
        self.isolation.stop()
        self.flusher.stop()

    def children(self) -> list[dict[str, Any]]:
        """The worker's live child processes: pid, job (None: idle), jobs run, resident bytes after the last."""
        return self.isolation.children()

    def report(self) -> str:
        """The pool and its children as JSON, for the heartbeat (``jobkit workers`` shows it)."""
        return json.dumps({"pool": self.config.pool, "children": self.isolation.children()})

    def run_once(self, jobs: Sequence[ClaimedJob]) -> int:
        """Run claimed jobs in the calling thread, one after another, each outcome written before the next."""
        self.deadlines.start()  # timeouts fire here too
        for job in jobs:
            held = self._hold(job, inline=True)
            if held.prepared is not None:
                self._run_one(held)
            self.completer.run_once()
        # Once per batch, not per job: the counts of what ran are stored when the pass returns.
        self.completer.tally.flush(force=bool(jobs))
        return len(jobs)

    # -- taking jobs in --------------------------------------------------------------------------------

    def dispatch(self, job: ClaimedJob) -> None:
        """Hold a claimed job and queue it for an executor; a job that cannot be prepared fails at once."""
        held = self._hold(job, inline=False)
        if held.prepared is not None:
            self._work.put(held)

    def _hold(self, job: ClaimedJob, *, inline: bool) -> HeldJob:
        token = CancelToken()
        reporter = JobReporter(job, token, self.clock, self.emit, self.reports, self.flusher, self.dump)
        held = HeldJob(job, self.types().get(job.name), token, reporter, inline=inline)
        self.ledger.hold(held)
        try:
            prepared = self._prepare(held)
        except Exception as exc:
            # prepare() already turns a bad row into a failure; this is the net under it, so one
            # row can never stop the producer (and with it every worker that claims the row next).
            log.exception("job %s: could not be prepared", job.id)
            prepared = Failed(error_entry(exc, job.attempt, self.clock.now()), retryable=False)
        if isinstance(prepared, Failed):
            self._emit_started(job)
            self._done(held, prepared)
        else:
            held.prepared = prepared
        return held

    def _prepare(self, held: HeldJob) -> Prepared | Failed:
        job = held.job
        if held.job_type is None:
            error = LookupError(f"no job type named {job.name!r} is registered in this worker")
            return Failed(error_entry(error, job.attempt, self.clock.now()), retryable=False)
        return prepare(job, held.job_type, held.token, held.reporter, self.clock)

    def _emit_started(self, job: ClaimedJob) -> None:
        self.emit(Event(EventType.STARTED, job.id, {"name": job.name, "attempt": job.attempt}, job))
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

    # -- running -------------------------------------------------------------------------------------

    def _spawn_executor(self) -> None:
        with self._lock:
            self._spawned += 1
            name = f"jobkit-exec-{self._spawned}"
        threading.Thread(target=self._executor_loop, name=name, daemon=True).start()

    def _executor_loop(self) -> None:
        while True:
            held = self._work.get()
            if held is None:
                return
            try:
                if not self._run_one(held):
                    return  # this thread was abandoned to its job; a replacement took its place
            except BaseException as exc:
                # Nothing a job does reaches here (run_sync never raises); a bug of ours does. The
                # job is recorded as a crash and a fresh thread takes this one's place.
                log.exception("executor thread failed on job %s; replacing the thread", held.job.id)
                self._done(held, self._thread_lost(held, exc))
                self._spawn_executor()
                return

    def _run_one(self, held: HeldJob) -> bool:
        """Run one held job here (or hand an async one to the loop); False: this thread must exit."""
        if not self._begin(held):
            return True
        prepared = held.prepared
        assert prepared is not None
        if self.isolation.applies(prepared.job_type):
            self._done(held, self.isolation.pool().run(held, self.config.kill_grace))
            return True
        if prepared.job_type.is_async and not held.inline:
            future = asyncio.run_coroutine_threadsafe(run_async(prepared, self.clock, self.dump), self._event_loop())
            future.add_done_callback(partial(self._async_done, held))
            return True
        outcome = run_sync(prepared, self.clock, self.dump)
        self._done(held, outcome)
        if not self.ledger.returned(held):
            return True
        log.warning("job %s %s returned at last; its abandoned thread exits", *_ids(held))
        return False

    def _begin(self, held: HeldJob) -> bool:
        """Move a held job into a slot (waiting for one) and start its timeout; False: it was withdrawn."""
        if not self.ledger.begin(held):
            return False
        self._emit_started(held.job)
        prepared = held.prepared
        assert prepared is not None
        timeout = prepared.job_type.options.timeout
        if timeout is not None:
            self.deadlines.at(timeout, held, Action.TIMEOUT)
        return True

    def _job_name(self, job_id: int) -> str | None:
        held = self.ledger.get(job_id)
        return None if held is None else held.job.name

    def _async_done(self, held: HeldJob, future: Future[Outcome]) -> None:
        try:
            outcome = future.result()
        except BaseException as exc:
            # run_async never raises; this is a cancelled future or a bug: the job still gets an outcome.
            outcome = self._thread_lost(held, exc)
        self._done(held, outcome)

    def _thread_lost(self, held: HeldJob, exc: BaseException) -> Crashed:
        error = WorkerLost(f"the thread running it failed: {type(exc).__name__}: {first_line(exc)}")
        error.__cause__ = exc
        return Crashed(error_entry(error, held.job.attempt, self.clock.now()))

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._loop = loop
                self._loop_thread = threading.Thread(target=loop.run_forever, name="jobkit-async", daemon=True)
                self._loop_thread.start()
                self.loop_watch = LoopWatch(loop, self.config.loop_lag_threshold, self._job_name)
                self.loop_watch.start()
            return self._loop

    # -- endings ---------------------------------------------------------------------------------------

    def _done(self, held: HeldJob, outcome: Outcome) -> bool:
        """Free the job's slot and hand its outcome to the completer; False when it had ended already."""
        taken = self.ledger.end(held, partial(self._hand_over, held, outcome))
        self.on_freed()
        return taken

    def _hand_over(self, held: HeldJob, outcome: Outcome) -> None:
        self.completer.submit(self._finished(held, outcome))

    def _finished(self, held: HeldJob, outcome: Outcome) -> Finished:
        options = held.job_type.options if held.job_type else None
        backoff = options.backoff_seconds if options else _no_backoff
        ran = time.monotonic() - held.began if held.started else None
        return Finished(held.job, outcome, backoff, held.reporter.take_pending(), ran)

    def interrupt(self, held: HeldJob, reason: CancelReason) -> None:
        """Fire a held job's token; a job that has not started yet is given its outcome at once.

        A started job that ignores its token is ended without it after kill_grace (``kill`` and
        ``discard``: at once), except at shutdown, where the shutdown grace decides.
        """
        if self.withdraw(held, reason):
            return
        fired = held.token.cancel(reason)
        if reason in (CancelReason.KILL, CancelReason.DISCARD):
            # At once, also when an earlier request (a cancel, a timeout) already fired the token.
            self.deadlines.at(0.0, held, Action.ABANDON)
        elif fired and reason != CancelReason.SHUTDOWN:
            self.deadlines.at(self.config.kill_grace, held, Action.ABANDON)

    def withdraw(self, held: HeldJob, reason: CancelReason) -> bool:
        """End a held job that has not started with ``Cancelled(reason)``; False if it started already."""
        if not self.ledger.withdraw(held):
            return False
        held.token.cancel(reason)
        self._done(held, Cancelled(CancelReason.parse(held.token.reason or reason)))
        return True

    def _on_deadline(self, held: HeldJob, action: Action) -> None:
        if not held.in_slot or not self.ledger.holds(held):
            return  # ended in time
        if action is Action.TIMEOUT:
            if held.token.cancel(CancelReason.TIMEOUT):
                timeout = held.job_type.options.timeout if held.job_type else None
                log.warning("job %s %s exceeded its timeout of %ss; cancelling it", *_ids(held), timeout)
                # The caller's own thread is never left behind: it waits for its job (a child can be killed).
                if not held.inline or self.isolation.applies(held.job_type):
                    self.deadlines.at(self.config.kill_grace, held, Action.ABANDON)
        elif held.token.reason == CancelReason.SHUTDOWN:
            return
        elif self.isolation.applies(held.job_type):
            # A child can be killed: its job ends with its process (the executor thread sees the death).
            self.isolation.pool().terminate(held, held.token.reason or CancelReason.KILL)
        elif not held.inline:
            self._abandon(held)

    def _abandon(self, held: HeldJob) -> None:
        """End a job that ignored its token past kill_grace: record it now, give its slot to a new thread."""
        thread_bound = not (held.job_type is not None and held.job_type.is_async)
        now = self.clock.now()
        outcome = abandoned(held.job, held.job_type, held.token.reason, self.config.kill_grace, now)
        stuck = self.ledger.abandon(held, partial(self._hand_over, held, outcome), thread_bound=thread_bound)
        if stuck is None:
            return  # it ended meanwhile
        log.warning(
            "job %s %s ignored its token (%s) for kill_grace %.1fs; recorded and %s",
            *_ids(held),
            held.token.reason,
            self.config.kill_grace,
            f"its thread abandoned ({stuck} stuck)" if thread_bound else "its task left behind",
        )
        if thread_bound:
            self._spawn_executor()
            if stuck > self.config.max_stuck_threads:
                self.lifecycle.go_fatal(
                    EXIT_STUCK,
                    f"{stuck} executor threads are stuck in jobs that ignore their token "
                    f"(max_stuck_threads={self.config.max_stuck_threads}); restart this worker",
                )
        self.on_freed()

    # -- shutdown --------------------------------------------------------------------------------------

    def drain(self, until: float, hurry: threading.Event) -> None:
        """Shutdown: hand back prefetched jobs, wait for running ones until ``until``, then cancel and write off."""
        for held in list(self.ledger.snapshot().values()):
            self.withdraw(held, CancelReason.SHUTDOWN)
        self.ledger.wait_empty(until, hurry)
        leftover = list(self.ledger.snapshot().values())
        for held in leftover:
            self.interrupt(held, CancelReason.SHUTDOWN)
        if not leftover:
            return
        log.info("shutdown: cancelled %d unfinished jobs; waiting briefly for them to stop", len(leftover))
        self.ledger.wait_empty(time.monotonic() + (0.25 if hurry.is_set() else 1.0))
        for held in self.ledger.write_off():
            # It outlived the grace and its token: a crash, so a job that wedges every worker
            # it meets ends failed after max_crashes instead of going round for ever.
            log.warning("job %s %s did not stop within the shutdown grace; counted as a crash", *_ids(held))
            worker = self.worker_id()
            error = WorkerLost(f"did not stop within the shutdown grace of worker {worker}")
            entry = {**error_entry(error, held.job.attempt, self.clock.now()), "worker": worker}
            crash = Crashed(entry | {"reason": "shutdown"}, attempt_spent=False)
            self.completer.submit(self._finished(held, crash))


def _no_backoff(attempt: int) -> float:
    return 0.0


def _ids(held: HeldJob) -> tuple[int, str]:
    return held.job.id, held.job.name

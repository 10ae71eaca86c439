"""The process pool: long-lived child processes that run process-isolated jobs for the executor pool.

A process-isolated job still takes one of the worker's slots and one executor thread, which
waits for the child running it: so thread and process jobs share one ``concurrency``, and the
ledger, lease, heartbeat, deadlines and completer treat them alike. What changes is what can be
done to a job that misbehaves:

- past ``timeout`` its token is cancelled (the request crosses the pipe); past ``kill_grace``
  its child gets SIGTERM, then SIGKILL (:meth:`ProcessPool.terminate`); the attempt is a
  ``JobTimeout``, a ``cancel`` stays a cancel and a ``kill`` a kill, and a fresh child takes
  the next job;
- a child that dies on its own (``os._exit``, a segfault, the OOM killer) fails only its job,
  as a crash (``WorkerLost`` naming the exit code or signal), counted toward ``max_crashes``;
- a child is replaced after ``max_tasks_per_child`` jobs, or after a job that left it above
  ``max_memory_per_child`` resident bytes.

Children are fresh interpreters (``python -c`` running :func:`jobkit._runtime.child.main`, as
multiprocessing's ``spawn`` would start them, but without re-running the parent's ``__main__``;
never a fork of the threaded worker). They are started lazily, so a worker that runs no process
job never starts one (the pool costs nothing unused), and always from the pool's own spawner
thread: Linux's parent-death signal fires when the *thread* that started a child ends, so that
thread lives as long as the pool.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from jobkit._runtime import wire
from jobkit._runtime.childproc import START_TIMEOUT, TERM_TO_KILL, Child, ready, start_child
from jobkit._runtime.ledger import HeldJob
from jobkit._runtime.outcome import Cancelled, Crashed, Failed, Outcome, error_entry
from jobkit._vocabulary import CancelReason
from jobkit.errors import Discard, JobTimeout, WorkerLost

log = logging.getLogger("jobkit.worker")


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """Limits of the children: jobs and resident bytes before one is replaced (None: no limit)."""

    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    max_payload_depth: int = 64
    max_payload_bytes: int = 16 * 1024 * 1024


class ProcessPool:
    """Children for process-isolated jobs: started on demand, reused, replaced when limits or deaths say.

    Example::

        pool = ProcessPool(ProcessConfig(max_tasks_per_child=100), modules=lambda: ("app.jobs",))
        outcome = pool.run(held, relay)     # in an executor thread: blocks until the job ends
        pool.terminate(held, CancelReason.TIMEOUT)    # from the watchdog: SIGTERM now, SIGKILL soon
        pool.stop()
    """

    def __init__(self, config: ProcessConfig, modules: Callable[[], tuple[str, ...]], capacity: int = 1) -> None:
        self.config = config
        self.modules = modules
        #: Most children kept alive (the worker's concurrency): a replacement is started only below it.
        self.capacity = capacity
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        #: Spare children starting now (a job with no idle child waits for one of them).
        self._warming = 0
        # Requests to the spawner thread: a future to start one for a job, a count of spares, None to stop.
        self._spawns: queue.SimpleQueue[Future[Child] | int | None] = queue.SimpleQueue()
        self._spawner: threading.Thread | None = None
        self._idle: list[Child] = []
        self._busy: dict[int, Child] = {}
        # Kills asked for a job whose child was still starting: done as soon as it has one.
        # Keyed by the held job itself, so a late request can never reach a later attempt of the job.
        self._pending_kills: dict[int, tuple[HeldJob, str]] = {}
        self._stopped = False
        #: Children started and replaced so far, for operators and tests.
        self.started = 0
        self.replaced = 0

    # -- children ------------------------------------------------------------------------------------

    def _spawn(self) -> Child:
        """A new child, started by the spawner thread, once it has imported the app and said so."""
        request: Future[Child] = Future()
        with self._lock:
            if self._stopped:
                raise WorkerLost("the worker is stopping")
            self.started += 1
        self._ensure_spawner()
        self._spawns.put(request)
        # Waited for here, not in the spawner, so that children start side by side.
        return ready(request.result())

    def _spawn_loop(self) -> None:
        while True:
            request = self._spawns.get()
            if request is None:
                return
            if isinstance(request, int):
                self._warm(request)
                continue
            try:
                request.set_result(self._start_process())
            except BaseException as exc:  # handed to the thread that asked, which fails its job
                request.set_exception(exc)

    def warm(self, count: int) -> None:
        """Start up to ``count`` spare children in the background (a processes worker at start)."""
        self._ensure_spawner()
        self._spawns.put(count)

    def _ensure_spawner(self) -> None:
        with self._lock:
            if self._spawner is None and not self._stopped:
                self._spawner = threading.Thread(target=self._spawn_loop, name="jobkit-spawner", daemon=True)
                self._spawner.start()

    def _warm(self, count: int) -> None:
        """Start up to ``count`` spare children side by side, so that the next jobs find them ready."""
        with self._lock:
            room = self.capacity - len(self._idle) - len(self._busy) - self._warming
            count = 0 if self._stopped else max(0, min(count, room))
            self._warming += count
            self.started += count
        started: list[Child] = []
        for _ in range(count):
            try:
                started.append(self._start_process())
            except Exception as exc:
                log.warning("could not start a spare child process: %s", exc)
                self._warmed(None)
        for child in started:
            try:
                self._warmed(ready(child))
            except Exception as exc:
                log.warning("a spare child process did not start: %s", exc)
                self._warmed(None)

    def _warmed(self, child: Child | None) -> None:
        with self._lock:
            self._warming -= 1
            if child is not None and not self._stopped:
                self._idle.append(child)
                child = None
            self._cv.notify_all()
        if child is not None:
            child.close()

    def _start_process(self) -> Child:
        config = self.config
        return start_child(self.modules(), config.max_payload_depth, config.max_payload_bytes)

    def _acquire(self, held: HeldJob) -> Child:
        job_id = held.job.id
        child: Child | None = None
        with self._lock:
            while child is None:
                if not self._idle:
                    if not self._warming:
                        break
                    # A spare is on its way: waiting for it beats starting one more beside it.
                    self._cv.wait(START_TIMEOUT)
                    continue
                child = self._idle.pop()
                if child.process.poll() is not None:
                    child = None  # died while idle (killed from outside): forget it
        if child is None:
            child = self._spawn()
        child.job_id = job_id
        with self._lock:
            self._busy[job_id] = child
            pending = self._pending_kills.pop(job_id, None)
        if pending is not None and pending[0] is held:
            self._kill(child, job_id, pending[1])
        return child

    def _release(self, child: Child, *, dead: bool) -> None:
        with self._lock:
            if child.job_id is not None and self._busy.get(child.job_id) is child:
                del self._busy[child.job_id]
            child.job_id = None
            # A child being killed is never reused: its job may have ended just before the signal.
            retire = dead or child.killing is not None or self._stopped or not self._within_limits(child)
            spare = len(self._idle) >= self.capacity  # more children than slots: one was started too many
            if not retire and not spare:
                self._idle.append(child)
                return
            if retire:
                self.replaced += 1
        if not dead:
            if retire:
                log.info("child %s replaced after %d jobs (%d bytes resident)", child.pid, child.tasks, child.rss)
            child.close()
        if retire:
            self._spawns.put(1)

    def _within_limits(self, child: Child) -> bool:
        limit = self.config.max_tasks_per_child
        if limit is not None and child.tasks >= limit:
            return False
        memory = self.config.max_memory_per_child
        return memory is None or child.rss <= memory

    def children(self) -> list[dict[str, Any]]:
        """Each live child: pid, the job it runs (None: idle), jobs run, resident bytes after its last job."""
        with self._lock:
            busy = [(c, True) for c in self._busy.values()]
            idle = [(c, False) for c in self._idle]
        return [{"pid": c.pid, "job": c.job_id if b else None, "tasks": c.tasks, "rss": c.rss} for c, b in busy + idle]

    # -- running one job --------------------------------------------------------------------------------

    def run(self, held: HeldJob, kill_grace: float) -> Outcome:
        """Run ``held`` in a child and return its outcome; blocks the calling (executor) thread."""
        job = held.job
        try:
            child = self._acquire(held)
        except Exception as exc:
            with self._lock:
                self._pending_kills.pop(job.id, None)
            error = WorkerLost(f"no child process to run it in: {exc}")
            return Crashed(error_entry(error, job.attempt, _now(held)), attempt_spent=False)
        module = getattr(held.job_type.target, "__module__", None) if held.job_type else None
        message = {
            "op": "run",
            "job": dataclasses.asdict(job),
            "module": module,
            "reason": held.token.reason,
            "now": _now(held),  # the worker's clock (a test's fake one too): the child keeps its times on it
        }
        outcome: Outcome | None = None
        if child.send(message):
            # After the run message: a cancel always reaches the child behind the job it is for.
            held.token.on_cancel(partial(_forward_cancel, child, job.id))
            outcome = self._relay(child, held)
        dead = outcome is None
        if outcome is None:
            outcome = self._ended(child, held, kill_grace)
        with self._lock:
            self._pending_kills.pop(job.id, None)  # asked for as it ended: nothing left to kill
        self._release(child, dead=dead)
        return outcome

    def _relay(self, child: Child, held: HeldJob) -> Outcome | None:
        """Hand the child's reports to the job's reporter until its outcome arrives; None: the child died."""
        while True:
            message = child.recv()
            if message is None:
                return None
            op = message.get("op")
            if op in ("progress", "checkpoint", "done") and message.get("job") != held.job.id:
                continue  # from a thread an earlier job left running in the child: not this job's
            try:
                if op == "done":
                    child.tasks += 1
                    child.rss = int(message.get("rss") or 0)
                    return wire.load_outcome(message["outcome"])
                if op == "progress":
                    data = message.get("data") or {}
                    held.reporter.progress(
                        float(message["percent"]), message.get("stage"), message.get("message"), data
                    )
                elif op == "checkpoint":
                    held.reporter.checkpoint(str(message["stage"]), message.get("data"))
                elif op == "log":
                    logging.getLogger(str(message["name"])).log(int(message["level"]), "%s", message["message"])
            except Exception:
                # One bad message (or a write the store refused) must not lose the job's outcome.
                log.exception("job %s: could not handle %r from child %s", held.job.id, op, child.pid)

    def _ended(self, child: Child, held: HeldJob, kill_grace: float) -> Outcome:
        """The outcome of a job whose child died: the request that killed it, or a crash."""
        cause = child.death()
        job, now = held.job, _now(held)
        reason = child.killing
        if reason == CancelReason.TIMEOUT:
            timeout = held.job_type.options.timeout if held.job_type else None
            error = JobTimeout(
                f"{job.name}: exceeded its timeout of {timeout}s and did not stop within kill_grace "
                f"({kill_grace}s); its child process {child.pid} was killed ({cause})"
            )
            return Failed(error_entry(error, job.attempt, now), retryable=True)
        if reason == CancelReason.DISCARD:
            return Failed(error_entry(Discard("discarded by an operator while running"), job.attempt, now), False)
        if reason is not None:
            log.warning("job %s %s: child %s ended (%s) for %s", job.id, job.name, child.pid, cause, reason)
            return Cancelled(CancelReason.parse(reason))
        log.warning("job %s %s: its child process %s died (%s)", job.id, job.name, child.pid, cause)
        lost = WorkerLost(f"{job.name}: the child process {child.pid} running it died ({cause})")
        entry = error_entry(lost, job.attempt, now) | {"exit": cause}
        return Crashed(entry)

    def terminate(self, held: HeldJob, reason: str) -> bool:
        """End the child running ``held`` (SIGTERM now, SIGKILL after TERM_TO_KILL); False if none does."""
        with self._lock:
            child = self._busy.get(held.job.id)
            if child is None:
                self._pending_kills[held.job.id] = (held, reason)
                return False
        self._kill(child, held.job.id, reason)
        return True

    def _kill(self, child: Child, job_id: int, reason: str) -> None:
        if child.killing is not None:
            return
        child.killing = reason
        log.warning("job %s: terminating its child process %s (%s)", job_id, child.pid, reason)
        child.signal(signal.SIGTERM)
        timer = threading.Timer(TERM_TO_KILL, child.signal, args=(signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    # -- the service ------------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Ask every idle child to exit and wait for them; a child still running a job is killed."""
        with self._lock:
            self._stopped = True
            idle, self._idle = self._idle, []
            busy = list(self._busy.values())
            self._cv.notify_all()
        for child in idle:
            child.close()
        for child in busy:
            child.killing = child.killing or CancelReason.SHUTDOWN
            child.signal(signal.SIGKILL)
        for child in idle + busy:
            if child.wait(timeout) is None:
                child.signal(signal.SIGKILL)
                child.wait(timeout)
        self._spawns.put(None)


def _forward_cancel(child: Child, job_id: int, reason: str) -> None:
    child.send({"op": "cancel", "job": job_id, "reason": reason})


def _now(held: HeldJob) -> float:
    return held.reporter.clock.now()

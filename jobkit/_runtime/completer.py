"""The completer: turns Outcomes into fenced transitions and writes them in batches.

Outcomes are never dropped: when the database is away the batch is kept and
written again with backoff until it lands (or until a stop deadline, after
which rescue takes over, which at-least-once delivery allows).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobkit._clock import Clock
from jobkit._runtime.outcome import Cancelled, Completed, Crashed, Failed, Outcome, Snoozed, error_entry
from jobkit._store import ClaimedJob, Store, Transition, is_transient
from jobkit.errors import Discard

log = logging.getLogger("jobkit.completer")
#: One line per job start and end; its own logger, so a busy worker can keep it quiet.
job_log = logging.getLogger("jobkit.jobs")

Emit = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Finished:
    """A job that ran, with what it produced and the progress still to be written."""

    job: ClaimedJob
    outcome: Outcome
    backoff: Callable[[int], float]
    progress: str | None = None
    #: Seconds the job ran in its slot (None: it never started), for the log line.
    ran: float | None = None


def _errors_with(job: ClaimedJob, entry: dict[str, Any]) -> str:
    """The job's error history with ``entry`` appended; a damaged history is kept as text, never fatal."""
    history: list[Any]
    try:
        loaded = json.loads(job.errors) if job.errors else []
        history = loaded if isinstance(loaded, list) else [{"type": "DamagedHistory", "raw": job.errors}]
    except (ValueError, RecursionError):
        history = [{"type": "DamagedHistory", "message": "the stored error history was not JSON", "raw": job.errors}]
    history.append(entry)
    return json.dumps(history)


def _discarded(job: ClaimedJob, now: float) -> dict[str, Any]:
    return error_entry(Discard("discarded by an operator while running"), job.attempt, now)


def to_transitions(item: Finished, now: float, max_crashes: int = 3) -> tuple[list[Transition], str | None]:
    """The writes for one finished job and the event it produces (None: nothing to write)."""
    job = item.job
    lease = (job.id, job.worker_id, job.lease)
    writes: list[Transition] = []
    if item.progress is not None:
        writes.append(Transition("progress", *lease, {"progress": item.progress}))
    event: str | None
    match item.outcome:
        case Completed(result):
            writes.append(Transition("complete", *lease, {"result": result}))
            event = "completed"
        case Failed(error, retryable) if retryable and job.attempt <= job.max_retries:
            delay = item.backoff(job.attempt)
            writes.append(Transition("retry", *lease, {"delay": delay, "errors": _errors_with(job, error)}))
            event = "retrying"
        case Failed(error, _):
            writes.append(Transition("fail", *lease, {"errors": _errors_with(job, error)}))
            event = "failed"
        case Cancelled("pause"):
            writes.append(Transition("pause", *lease))
            event = "paused"
        case Cancelled("shutdown" | "requeue"):
            # Shutdown, or a prefetched job handed back unstarted: the attempt was not spent.
            writes.append(Transition("release", *lease, {"delay": 0.0}))
            event = "released"
        case Cancelled("lease_lost"):
            # The worker fenced itself (heartbeat lost). If nobody rescued the job meanwhile the lease
            # still holds and the job goes back to pending; if it was rescued this write is refused.
            writes.append(Transition("release", *lease, {"delay": 0.0}))
            event = "released"
        case Cancelled("discard"):
            writes.append(Transition("fail", *lease, {"errors": _errors_with(job, _discarded(job, now))}))
            event = "failed"
        case Cancelled(_):
            writes.append(Transition("cancel", *lease, {"errors": job.errors}))
            event = "cancelled"
        case Crashed(error, attempt_spent):
            # Counted exactly as a rescue counts a dead worker's job; a shutdown overrun gives the attempt back.
            spent = job.crashes + 1 >= max_crashes or (attempt_spent and job.attempt > job.max_retries)
            kind = "rescue_fail" if spent else ("rescue" if attempt_spent else "release_crash")
            writes.append(Transition(kind, *lease, {"errors": _errors_with(job, error)}))
            event = "failed" if spent else "rescued"
        case Snoozed(seconds):
            writes.append(Transition("snooze", *lease, {"delay": seconds}))
            event = "snoozed"
    return writes, event


#: The longest a retry's backoff or a snooze may defer a job (about 100 years).
MAX_DELAY = 100 * 365.25 * 86400


def _sane_delay(item: Finished, now: float) -> Finished:
    """The item to write: a retry or snooze whose delay is not a sane number becomes a failure.

    A custom backoff may return NaN, a negative or an enormous number; stored, such a run time
    would fail the write (NOT NULL on SQLite) or park the job where no claim ever finds it.
    """
    outcome, job = item.outcome, item.job
    if isinstance(outcome, Snoozed):
        delay, what = outcome.seconds, "Snooze"
    elif isinstance(outcome, Failed) and outcome.retryable and job.attempt <= job.max_retries:
        try:
            delay, what = float(item.backoff(job.attempt)), "the backoff"
        except Exception as exc:
            delay, what = math.nan, f"the backoff (it raised {type(exc).__name__}: {exc})"
    else:
        return item
    if math.isfinite(delay) and 0 <= delay <= MAX_DELAY:
        return item
    error = ValueError(f"{job.name}: {what} gave a delay of {delay!r} seconds; expected 0 to {MAX_DELAY:.0f}")
    failed = Failed(error_entry(error, job.attempt, now), retryable=False)
    return Finished(job, failed, item.backoff, item.progress, item.ran)


class Completer:
    """Batches finished jobs into one transaction each few milliseconds; see :func:`to_transitions`."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        emit: Emit,
        batch: int = 200,
        flush: float = 0.002,
        on_requeued: Callable[[float], None] | None = None,
        max_crashes: int = 3,
    ) -> None:
        #: Called with the new run time of every job this completer put back to pending (retry,
        #: snooze, release), so the worker wakes for it instead of waiting for its next poll.
        self.on_requeued = on_requeued
        self.store = store
        self.clock = clock
        self.emit = emit
        self.max_crashes = max_crashes
        self.batch = batch
        self.flush = flush
        self._queue: queue.SimpleQueue[Finished | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        # Set when a whole batch is waiting (or on stop), to cut the flush interval short.
        self._full = threading.Event()
        self._pending = 0
        self._give_up_at: float | None = None
        self.refused = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._loop, name="jobkit-completer", daemon=True)
        self._thread.start()

    def submit(self, item: Finished) -> None:
        """Hand over a finished job; it will be written with the next batch."""
        with self._idle:
            self._pending += 1
            full = self._pending >= self.batch
        self._queue.put(item)
        if full:
            self._full.set()

    def stop(self, deadline: float = 30.0) -> None:
        """Write everything submitted so far (retrying up to ``deadline`` seconds), then stop."""
        self._give_up_at = time.monotonic() + deadline
        self._queue.put(None)
        self._full.set()
        if self._thread is not None:
            self._thread.join()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has been written."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            # Sleep through the flush interval rather than waking for every submitted job (a
            # thread switch per job is a large share of a no-op job's cost), then take what came.
            if self.flush > 0 and self._queue.qsize() < self.batch:
                self._full.wait(self.flush)
            self._full.clear()
            while len(batch) < self.batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write_until_done(batch)

    def _write_until_done(self, batch: list[Finished]) -> None:
        try:
            self._persist(batch)
        except Exception:
            # The writer thread is what turns every later outcome into a row: it must outlive a bug.
            log.exception("could not write %d outcomes; their jobs will be released or rescued", len(batch))
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()

    def _persist(self, batch: list[Finished]) -> None:
        """Write a batch; transient errors are retried, a permanent one is narrowed down to its job."""
        delay = 0.05
        logged = False
        while True:
            try:
                self.write(batch)
                if logged:
                    log.warning("database is back; %d held outcomes written", len(batch))
                return
            except Exception as exc:
                if not is_transient(exc):
                    # A data error belongs to one row: write the rest one by one, so one bad outcome
                    # cannot hold back every later outcome of this worker.
                    if len(batch) > 1:
                        log.warning("a batch of %d outcomes was refused (%s); writing them one by one", len(batch), exc)
                        for item in batch:
                            self._persist([item])
                    else:
                        self._unwritable(batch[0], exc)
                    return
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    log.error(
                        "could not write %d outcomes before stopping; rescue will rerun them: %s", len(batch), exc
                    )
                    return
                if not logged:
                    log.warning("cannot write outcomes (%s); holding %d and retrying", exc, len(batch))
                    logged = True
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _unwritable(self, item: Finished, exc: Exception) -> None:
        """The database refused this job's outcome for good: fail the job with the reason instead."""
        job = item.job
        log.error("job %s: its outcome cannot be stored (%s); failing the job with that reason", job.id, exc)
        reason = RuntimeError(f"the outcome of attempt {job.attempt} could not be stored: {str(exc).splitlines()[0]}")
        failed = Finished(
            job, Failed(error_entry(reason, job.attempt, self.clock.now()), retryable=False), item.backoff
        )
        try:
            self.write([failed])
        except Exception:
            log.exception("job %s: could not record the failure either; the worker will release it", job.id)

    def write(self, batch: list[Finished]) -> list[bool]:
        """Write one batch in one transaction and emit events; returns, per job, whether its lease held."""
        now = self.clock.now()
        if _only_completions(batch):
            return self._write_completions(batch, now)
        batch = [_sane_delay(item, now) for item in batch]
        plan = [to_transitions(item, now, self.max_crashes) for item in batch]
        flat = [t for writes, _ in plan for t in writes]
        took = iter(self.store.apply_detailed(flat, now))
        results: list[bool] = []
        for item, (writes, event) in zip(batch, plan, strict=True):
            statuses = [next(took) for _ in writes]
            ok = bool(writes) and all(status is not None for status in statuses)
            results.append(ok)
            if writes and not ok:
                self._refused(item, writes[-1].kind)
            elif event is not None:
                # An operator's cancel, discard or pause that arrived while the job ran ends it in the
                # same statement as its retry, snooze or release: the event says what really happened.
                final = statuses[-1]
                overridden = _BY_REQUEST.get(final or "")
                if overridden is not None and overridden != event:
                    event = overridden
                    item = Finished(item.job, _REQUESTED[final or ""], item.backoff, item.progress, item.ran)
                self.emit(_event(item, event))
                _log_end(item, event)
                delay = writes[-1].values.get("delay")
                if self.on_requeued is not None and final == "pending" and delay is not None:
                    self.on_requeued(now + float(delay))
        return results

    def _write_completions(self, batch: list[Finished], now: float) -> list[bool]:
        # The common case, done without building a transition per job: one statement for all.
        done = self.store.complete(
            batch[0].job.worker_id,
            [(item.job.id, item.job.lease, item.outcome.result) for item in batch],  # type: ignore[union-attr]
            now,
        )
        results: list[bool] = []
        logging_ends = job_log.isEnabledFor(logging.INFO)
        for item in batch:
            ok = item.job.id in done
            results.append(ok)
            if ok:
                self.emit(_event(item, "completed"))
                if logging_ends:
                    _log_end(item, "completed")
            else:
                self._refused(item, "complete")
        return results

    def _refused(self, item: Finished, kind: str) -> None:
        self.refused += 1
        log.warning(
            "job %s: lease (worker %s, lease %s) no longer held; the %s write was refused",
            item.job.id,
            item.job.worker_id,
            item.job.lease,
            kind,
        )


def _only_completions(batch: list[Finished]) -> bool:
    """True when every item completed with no progress left to write, all distinct jobs of one worker."""
    worker = batch[0].job.worker_id
    for item in batch:
        if type(item.outcome) is not Completed or item.progress is not None or item.job.worker_id != worker:
            return False
    return len({item.job.id for item in batch}) == len(batch)


#: Statuses a write can end in because of an operator's request, and the event each one is.
_BY_REQUEST = {"cancelled": "cancelled", "failed": "failed", "paused": "paused"}
_REQUESTED: dict[str, Outcome] = {
    "cancelled": Cancelled("cancel"),
    "failed": Failed({"type": "Discard", "message": "discarded by an operator while it ran"}, retryable=False),
    "paused": Cancelled("pause"),
}


def _event(item: Finished, event: str) -> dict[str, Any]:
    data: dict[str, Any] = {"type": event, "job_id": item.job.id, "name": item.job.name, "attempt": item.job.attempt}
    match item.outcome:
        case Completed(result, value):
            # The event carries the stored JSON's value: the object itself when it is plain JSON
            # already, a fresh parse when dumping changed it (a model, a datetime, a tuple).
            data["result"] = value if _plain_json(value) else json.loads(result)
        case Failed(error, _):
            data["error"] = {k: error[k] for k in ("type", "message")}
        case _:
            pass
    return data


def _plain_json(value: Any) -> bool:
    """True for values that JSON stores unchanged (shallowly: nested containers are re-parsed)."""
    return value is None or type(value) in (bool, int, float, str)


def _log_end(item: Finished, event: str) -> None:
    """The one line a job's end writes: INFO, WARNING for a retry, ERROR with traceback for a final failure."""
    job = item.job
    level = {"retrying": logging.WARNING, "failed": logging.ERROR, "rescued": logging.WARNING}.get(event, logging.INFO)
    if not job_log.isEnabledFor(level):
        return
    took = "" if item.ran is None else f" after {item.ran:.3f}s"
    where = f"(queue {job.queue}, attempt {job.attempt}/{job.max_retries + 1}, worker {job.worker_id})"
    outcome = item.outcome
    if isinstance(outcome, Failed | Crashed):
        error = outcome.error
        first = str(error.get("message") or "").splitlines()
        why = f": {error.get('type')}: {first[0] if first else ''}"
        if event == "retrying":
            with contextlib.suppress(Exception):  # checked before the write; a log line never raises
                why += f"; next attempt in {item.backoff(job.attempt):.1f}s"
        if event == "failed" and error.get("traceback"):
            why += "\n" + str(error["traceback"]).rstrip()
        job_log.log(level, "job %s %s %s%s %s%s", job.id, job.name, event, took, where, why)
        return
    job_log.log(level, "job %s %s %s%s %s", job.id, job.name, event, took, where)

"""The completer: writes what the policy decides for each finished job, in batches, and tells listeners.

What an outcome becomes is :mod:`jobkit._runtime.policy`'s to say; this module batches the
writes, isolates a write the database refuses to its own job, and emits the events. Outcomes
are never dropped: when the database is away the batch is kept and written again with backoff
until it lands (or until a stop deadline, after which rescue takes over, which at-least-once
delivery allows).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobkit._clock import Clock
from jobkit._runtime import policy
from jobkit._runtime.outcome import Completed, Crashed, Failed, Outcome, error_entry
from jobkit._runtime.tally import TALLY_EVERY, Tally
from jobkit._store import ClaimedJob, Completion, Store, is_transient
from jobkit._vocabulary import Event, EventType, JobState, TransitionKind

log = logging.getLogger("jobkit.completer")
#: One line per job start and end; its own logger, so a busy worker can keep it quiet.
job_log = logging.getLogger("jobkit.jobs")

Emit = Callable[[Event], None]


@dataclass(slots=True)
class Finished:
    """A job that ran, with what it produced and the progress still to be written.

    ``backoff`` is the job type's (attempt -> seconds): an input of the policy, which alone calls it.
    """

    job: ClaimedJob
    outcome: Outcome
    backoff: policy.Backoff
    progress: str | None = None
    #: Seconds the job ran in its slot (None: it never started), for the log line.
    ran: float | None = None


class Completer:
    """Batches finished jobs into one transaction each few milliseconds; see :func:`policy.decide`.

    A service: ``start()`` runs the writer thread, ``stop()`` writes what is left and ends it,
    ``run_once()`` writes what is queued in the calling thread (a worker that is not started).
    """

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
        #: Finished jobs per minute and queue, for the dashboard's charts.
        self.tally = Tally(store)

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
        self.tally.flush(force=True)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has been written."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def run_once(self) -> int:
        """Write every outcome submitted so far in the calling thread; returns how many were written here.

        A write that fails raises to the caller (``Worker.run_once`` runs jobs in a test's thread).
        """
        batch: list[Finished] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # a stop is under way: leave its sentinel for the writer thread
                break
            batch.append(item)
        try:
            for start in range(0, len(batch), self.batch):
                self.write(batch[start : start + self.batch])
        finally:
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()
        if self._thread is not None and self._thread.is_alive():
            self.wait_idle()  # what the writer thread took meanwhile lands before we return
        self.tally.flush()
        return len(batch)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            try:
                # While counts wait to be written, wake for them even when no job finishes.
                first = self._queue.get(timeout=TALLY_EVERY) if self.tally else self._queue.get()
            except queue.Empty:
                self.tally.flush()
                continue
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
            self.tally.flush()

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
        decisions = [
            policy.decide(
                item.job, item.outcome, now, backoff=item.backoff, max_crashes=self.max_crashes, progress=item.progress
            )
            for item in batch
        ]
        took = iter(self.store.apply_detailed([t for decision in decisions for t in decision.writes], now=now))
        results: list[bool] = []
        for item, decision in zip(batch, decisions, strict=True):
            writes = decision.writes
            statuses = [next(took) for _ in writes]
            ok = bool(writes) and all(status is not None for status in statuses)
            results.append(ok)
            if writes and not ok:
                self._refused(item, writes[-1].kind)
            elif decision.event is not None:
                final = statuses[-1]
                if final in (JobState.COMPLETED, JobState.FAILED):
                    self.tally.add(
                        item.job.queue,
                        completed=final == JobState.COMPLETED,
                        failed=final == JobState.FAILED,
                        now=now,
                    )
                event, outcome = decision.event, decision.outcome
                told = policy.requested(event, final)
                if told is not None:
                    event, outcome = told.event, told.outcome
                ended = Finished(item.job, outcome, item.backoff, item.progress, item.ran)
                self.emit(_event(ended, event))
                _log_end(ended, event, decision.delay)
                if self.on_requeued is not None and final == "pending" and decision.delay is not None:
                    self.on_requeued(now + decision.delay)
        return results

    def _write_completions(self, batch: list[Finished], now: float) -> list[bool]:
        # The common case, done without building a transition per job: one statement for all.
        done = self.store.complete(
            worker=batch[0].job.worker_id,
            rows=[Completion(item.job.id, item.job.lease, item.outcome.result) for item in batch],  # type: ignore[union-attr]
            now=now,
        )
        results: list[bool] = []
        logging_ends = job_log.isEnabledFor(logging.INFO)
        finished: dict[str, int] = {}
        for item in batch:
            ok = item.job.id in done
            results.append(ok)
            if ok:
                finished[item.job.queue] = finished.get(item.job.queue, 0) + 1
                self.emit(_event(item, EventType.COMPLETED))
                if logging_ends:
                    _log_end(item, EventType.COMPLETED)
            else:
                self._refused(item, TransitionKind.COMPLETE)
        for queue_name, count in finished.items():
            self.tally.add(queue_name, completed=count, failed=0, now=now)
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
    """True when every item is a plain completion (see the policy), all distinct jobs of one worker."""
    worker = batch[0].job.worker_id
    plain = policy.plain_completion
    for item in batch:
        if not plain(item.outcome, item.progress) or item.job.worker_id != worker:
            return False
    return len({item.job.id for item in batch}) == len(batch)


def _event(item: Finished, event: EventType) -> Event:
    # Built directly (not Event.of): once per finished job, and the claimed job rides along for observers.
    job = item.job
    match item.outcome:
        case Completed(result, value):
            # The event carries the stored JSON's value: the object itself when it is plain JSON
            # already, a fresh parse when dumping changed it (a model, a datetime, a tuple).
            value = value if _plain_json(value) else json.loads(result)
            details = {"name": job.name, "attempt": job.attempt, "result": value}
        case Failed(error, _):
            details = {"name": job.name, "attempt": job.attempt, "error": {k: error[k] for k in ("type", "message")}}
        case _:
            details = {"name": job.name, "attempt": job.attempt}
    return Event(EventType(event), job.id, details, job, item.ran)


def _plain_json(value: Any) -> bool:
    """True for values that JSON stores unchanged (shallowly: nested containers are re-parsed)."""
    return value is None or type(value) in (bool, int, float, str)


_LEVELS = {EventType.RETRYING: logging.WARNING, EventType.FAILED: logging.ERROR, EventType.RESCUED: logging.WARNING}


def _log_end(item: Finished, event: EventType, delay: float | None = None) -> None:
    """The one line a job's end writes: INFO, WARNING for a retry, ERROR with traceback for a final failure."""
    job = item.job
    level = _LEVELS.get(event, logging.INFO)
    if not job_log.isEnabledFor(level):
        return
    took = "" if item.ran is None else f" after {item.ran:.3f}s"
    where = f"(queue {job.queue}, attempt {job.attempt}/{job.max_retries + 1}, worker {job.worker_id})"
    outcome = item.outcome
    if isinstance(outcome, Failed | Crashed):
        error = outcome.error
        first = str(error.get("message") or "").splitlines()
        why = f": {error.get('type')}: {first[0] if first else ''}"
        if event == EventType.RETRYING and delay is not None:
            why += f"; next attempt in {delay:.1f}s"
        if event == EventType.FAILED and error.get("traceback"):
            why += "\n" + str(error["traceback"]).rstrip()
        job_log.log(level, "job %s %s %s%s %s%s", job.id, job.name, event, took, where, why)
        return
    job_log.log(level, "job %s %s %s%s %s", job.id, job.name, event, took, where)

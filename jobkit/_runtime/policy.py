"""What the end of an attempt becomes: the one place an outcome or a crash turns into a transition.

Pure functions of (job, outcome or crash, now): no thread, no database, no clock of their own.
The completer asks :func:`decide` for every finished job and writes what comes back; the
rescuer's rule for a job whose worker was lost is :func:`for_lost` (the store's rescue pass
applies the same rule in SQL today). The store only executes the transitions.

The rules, in one place:

- a failure is retried while the error is retryable (:func:`retryable`) and the job has retries
  left (:func:`retries_left`), after its backoff; otherwise the job fails;
- a retry's backoff or a snooze whose delay is not a sane number fails the job instead;
- a cancel for pause pauses, for shutdown, a hand-back or a lost lease releases (the attempt is
  given back), for discard fails, for anything else cancels;
- a crash counts against ``max_crashes`` (a poison pill fails once it is reached) and spends the
  attempt unless the job only overran a shutdown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobkit._registry import JobOptions
from jobkit._runtime.outcome import Cancelled, Completed, Crashed, Failed, Outcome, Snoozed, error_entry
from jobkit._store import ClaimedJob, Transition
from jobkit._vocabulary import CancelReason, EventType, JobState
from jobkit._vocabulary import TransitionKind as Kind
from jobkit.errors import Discard

#: The longest a retry's backoff or a snooze may defer a job (about 100 years).
MAX_DELAY = 100 * 365.25 * 86400

#: Seconds to wait before the next attempt, given the attempt that just failed.
Backoff = Callable[[int], float]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one finished job becomes: the writes, in order, and the event they make (None: nothing to tell)."""

    writes: list[Transition]
    event: EventType | None
    #: The outcome as decided: a retry or snooze with an insane delay is a failure here.
    outcome: Outcome
    #: Seconds until the job runs again (retry, snooze, release), None when it does not go back.
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Lost:
    """What a rescue does to a job whose worker was lost."""

    kind: Kind
    #: The job's crash count with this one.
    crashes: int
    #: True when the job fails because it has crashed ``max_crashes`` times (a poison pill).
    poisoned: bool = False


@dataclass(frozen=True, slots=True)
class Requested:
    """How a write that an operator's request overrode is told: its event and outcome."""

    event: EventType
    outcome: Outcome = field(compare=False)


# -- the pieces ------------------------------------------------------------------------------------


def retryable(exc: BaseException, options: JobOptions) -> bool:
    """Whether an exception from perform may be retried: not Discard, not in discard_on, in retry_on if given."""
    if isinstance(exc, Discard) or (options.discard_on and isinstance(exc, options.discard_on)):
        return False
    return not (options.retry_on and not isinstance(exc, options.retry_on))


def retries_left(job: ClaimedJob) -> bool:
    """True while the attempt that just ran was not the last one allowed."""
    return job.attempt <= job.max_retries


def plain_completion(outcome: Outcome, progress: str | None) -> bool:
    """True for a completion with no progress left to write: one ``complete`` write, event ``completed``.

    The completer writes a batch made only of these with one statement, without asking
    :func:`decide` for each (the common case of a busy worker).
    """
    return type(outcome) is Completed and progress is None


def crash_kind(attempt: int, max_retries: int, crashes: int, max_crashes: int, *, attempt_spent: bool = True) -> Kind:
    """The write for a crashed attempt; ``crashes`` is the count before this crash."""
    if crashes + 1 >= max_crashes or (attempt_spent and attempt > max_retries):
        return Kind.RESCUE_FAIL
    return Kind.RESCUE if attempt_spent else Kind.RELEASE_CRASH


def for_crash(job: ClaimedJob, *, max_crashes: int, attempt_spent: bool = True) -> Kind:
    """A job whose attempt ended without an outcome of its own (its thread died, it outlived a shutdown)."""
    return crash_kind(job.attempt, job.max_retries, job.crashes, max_crashes, attempt_spent=attempt_spent)


def for_lost(attempt: int, max_retries: int, crashes: int, max_crashes: int) -> Lost:
    """A running job whose worker stopped heartbeating: counted exactly as a crash that spent the attempt."""
    kind = crash_kind(attempt, max_retries, crashes, max_crashes)
    return Lost(kind, crashes + 1, poisoned=crashes + 1 >= max_crashes)


def sane_delay(job: ClaimedJob, outcome: Outcome, backoff: Backoff) -> tuple[float | None, str | None]:
    """The delay the job goes back with (None: it does not go back) and, if it is not sane, why.

    A custom backoff may return NaN, a negative or an enormous number, or raise; stored, such a
    run time would fail the write (NOT NULL on SQLite) or park the job where no claim finds it.
    """
    shown: Any
    if isinstance(outcome, Snoozed):
        shown, what = outcome.seconds, "Snooze"
    elif isinstance(outcome, Failed) and outcome.retryable and retries_left(job):
        what = "the backoff"
        try:
            shown = float(backoff(job.attempt))
        except Exception as exc:
            shown, what = math.nan, f"the backoff (it raised {type(exc).__name__}: {exc})"
    else:
        return None, None
    try:
        delay = float(shown)
    except (TypeError, ValueError, OverflowError):
        delay = math.nan
    if math.isfinite(delay) and 0 <= delay <= MAX_DELAY:
        return delay, None
    return None, f"{job.name}: {what} gave a delay of {shown!r} seconds; expected 0 to {MAX_DELAY:.0f}"


def errors_with(job: ClaimedJob, entry: dict[str, Any]) -> str:
    """The job's error history with ``entry`` appended, naming the worker that held the attempt; a damaged
    history is kept as text, never fatal."""
    history: list[Any]
    try:
        loaded = json.loads(job.errors) if job.errors else []
        history = loaded if isinstance(loaded, list) else [{"type": "DamagedHistory", "raw": job.errors}]
    except (ValueError, RecursionError):
        history = [{"type": "DamagedHistory", "message": "the stored error history was not JSON", "raw": job.errors}]
    # Which worker ran each failed attempt (Django's TaskResult.worker_ids reads it; so may an operator).
    history.append(entry if entry.get("worker") or not job.worker_id else {**entry, "worker": job.worker_id})
    return json.dumps(history)


def discarded(job: ClaimedJob, now: float) -> dict[str, Any]:
    """The error entry of a job an operator discarded while it ran."""
    return error_entry(Discard("discarded by an operator while running"), job.attempt, now)


# -- the decision ------------------------------------------------------------------------------------


def decide(
    job: ClaimedJob,
    outcome: Outcome,
    now: float,
    *,
    backoff: Backoff,
    max_crashes: int,
    progress: str | None = None,
) -> Decision:
    """The writes for one finished job (its pending ``progress`` first) and the event they make."""
    delay, insane = sane_delay(job, outcome, backoff)
    if insane is not None:
        outcome = Failed(error_entry(ValueError(insane), job.attempt, now), retryable=False)
    lease = (job.id, job.worker_id, job.lease)
    writes: list[Transition] = []
    if progress is not None:
        writes.append(Transition(Kind.PROGRESS, *lease, {"progress": progress}))
    event: EventType
    match outcome:
        case Completed(result):
            writes.append(Transition(Kind.COMPLETE, *lease, {"result": result}))
            event = EventType.COMPLETED
        case Failed(error, _) if delay is not None:
            writes.append(Transition(Kind.RETRY, *lease, {"delay": delay, "errors": errors_with(job, error)}))
            event = EventType.RETRYING
        case Failed(error, _):
            writes.append(Transition(Kind.FAIL, *lease, {"errors": errors_with(job, error)}))
            event = EventType.FAILED
        case Cancelled(CancelReason.PAUSE):
            writes.append(Transition(Kind.PAUSE, *lease))
            event = EventType.PAUSED
        case Cancelled(CancelReason.SHUTDOWN | CancelReason.REQUEUE | CancelReason.LEASE_LOST):
            # Shutdown, or a prefetched job handed back unstarted: the attempt was not spent. A lost
            # lease (the worker fenced itself): if nobody rescued the job meanwhile the lease still
            # holds and the job goes back to pending; if it was rescued this write is refused.
            delay = 0.0
            writes.append(Transition(Kind.RELEASE, *lease, {"delay": delay}))
            event = EventType.RELEASED
        case Cancelled(CancelReason.DISCARD):
            writes.append(Transition(Kind.FAIL, *lease, {"errors": errors_with(job, discarded(job, now))}))
            event = EventType.FAILED
        case Cancelled(CancelReason.CANCEL | CancelReason.KILL | CancelReason.TIMEOUT):
            writes.append(Transition(Kind.CANCEL, *lease, {"errors": job.errors}))
            event = EventType.CANCELLED
        case Crashed(error, attempt_spent):
            # Counted exactly as a rescue counts a dead worker's job; a shutdown overrun gives the attempt back.
            kind = for_crash(job, max_crashes=max_crashes, attempt_spent=attempt_spent)
            writes.append(Transition(kind, *lease, {"errors": errors_with(job, error)}))
            event = EventType.FAILED if kind is Kind.RESCUE_FAIL else EventType.RESCUED
        case Snoozed():
            writes.append(Transition(Kind.SNOOZE, *lease, {"delay": delay}))
            event = EventType.SNOOZED
        case _:
            raise ValueError(f"job {job.id}: no transition for the outcome {outcome!r}")
    return Decision(writes, event, outcome, delay)


#: The states a write can end in because of an operator's request, and how that end is told.
_REQUESTED: dict[JobState, Requested] = {
    JobState.CANCELLED: Requested(EventType.CANCELLED, Cancelled(CancelReason.CANCEL)),
    JobState.FAILED: Requested(
        EventType.FAILED, Failed({"type": "Discard", "message": "discarded by an operator while it ran"}, False)
    ),
    JobState.PAUSED: Requested(EventType.PAUSED, Cancelled(CancelReason.PAUSE)),
}


def requested(event: EventType, final: str | None) -> Requested | None:
    """How to tell a write that ended in ``final``, when an operator's request overrode ``event``.

    A cancel, discard or pause that arrived while the job ran ends it in the same statement as
    its retry, snooze or release; the event then says what really happened. None: as decided.
    """
    state = JobState.parse(final) if final is not None else None
    told = _REQUESTED.get(state) if state is not None else None
    if told is None or told.event == event:
        return None
    return told

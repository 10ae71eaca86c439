"""The words jobkit's layers share: job states, transition kinds, cancel reasons and events.

A leaf (standard library only), so the store, the job API, the runtime and the edges all
speak it without importing each other. Every name is a ``StrEnum``: a member is the very
string stored in the database or sent to a listener (``JobState.PENDING == "pending"``), so
rows, JSON and events read the same as before these types existed, while code that
misspells a state no longer type-checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class JobState(StrEnum):
    """Where a job is in its life (``jobkit_jobs.status``).

    ``pending`` covers both "due now" and "scheduled for later" (its ``run_at`` says which).
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"

    @property
    def terminal(self) -> bool:
        """True for the states a job never leaves by itself: completed, failed and cancelled."""
        return self in TERMINAL_STATES

    @classmethod
    def parse(cls, value: object) -> JobState | None:
        """The state a stored value names, or None for a value that names none (a damaged row)."""
        try:
            return cls(str(value))
        except ValueError:
            return None


#: The one definition of "terminal": a job in one of these has ended and is never claimed again.
TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class TransitionKind(StrEnum):
    """The fenced writes a worker makes on a job it holds; each is one statement of the store."""

    COMPLETE = "complete"
    RETRY = "retry"
    FAIL = "fail"
    CANCEL = "cancel"
    #: Give the attempt back and put the job back to pending (shutdown, a prefetched job unstarted).
    RELEASE = "release"
    SNOOZE = "snooze"
    PAUSE = "pause"
    PROGRESS = "progress"
    CHECKPOINT = "checkpoint"
    #: The job's worker was lost: back to pending, the attempt stays spent, the crash is counted.
    RESCUE = "rescue"
    #: As RESCUE, but the job has crashed too often or has no attempts left: it fails.
    RESCUE_FAIL = "rescue_fail"
    #: The job outlived a shutdown's grace: a crash is counted but the attempt is given back.
    RELEASE_CRASH = "release_crash"

    @property
    def keeps_lease(self) -> bool:
        """True for the writes that leave the job running (progress and checkpoints)."""
        return self in (TransitionKind.PROGRESS, TransitionKind.CHECKPOINT)


class Request(StrEnum):
    """What an operator asked of a job from any process (``jobkit_jobs.cancel_requested``).

    Ranked by strength: a stronger request replaces a weaker one, never the reverse.
    """

    PAUSE = "pause"
    CANCEL = "cancel"
    DISCARD = "discard"
    KILL = "kill"

    @property
    def ends_job(self) -> bool:
        """True for the requests that end the job (all but pause): the operator's word is final."""
        return self is not Request.PAUSE

    @property
    def rank(self) -> int:
        """Strength of the request: pause < cancel < discard < kill."""
        return _REQUEST_RANK.index(self)


_REQUEST_RANK = (Request.PAUSE, Request.CANCEL, Request.DISCARD, Request.KILL)


class CancelReason(StrEnum):
    """Why a job's cancellation token fired."""

    CANCEL = "cancel"
    PAUSE = "pause"
    KILL = "kill"
    DISCARD = "discard"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    #: A prefetched job handed back before it started.
    REQUEUE = "requeue"
    #: The worker could not renew its lease and fenced itself.
    LEASE_LOST = "lease_lost"

    @classmethod
    def parse(cls, value: str) -> CancelReason:
        """The reason ``value`` names; a clear ValueError for any other text."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(reason.value for reason in cls)
            raise ValueError(f"unknown cancel reason {value!r}; expected one of: {known}") from None


class EventType(StrEnum):
    """The ``type`` of an event delivered to ``queue.subscribe`` listeners and handle streams."""

    ENQUEUED = "enqueued"
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"
    SNOOZED = "snoozed"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    RESUMED = "resumed"
    #: A job handed back without spending its attempt (shutdown, lease lost, prefetched unstarted).
    RELEASED = "released"
    #: A job of a lost worker (or a crashed attempt) put back to pending.
    RESCUED = "rescued"
    #: An operator retried a failed or cancelled job.
    RETRIED = "retried"
    DELETED = "deleted"


#: The events that end an attempt (whatever comes next for the job); metrics and traces close it on these.
ATTEMPT_ENDINGS: frozenset[EventType] = frozenset(
    {
        EventType.COMPLETED,
        EventType.FAILED,
        EventType.RETRYING,
        EventType.CANCELLED,
        EventType.SNOOZED,
        EventType.PAUSED,
        EventType.RELEASED,
    }
)


class AttemptFacts(Protocol):
    """What an observer may read about the attempt behind an event (a worker's claimed job)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def run_at(self) -> float: ...
    @property
    def created_at(self) -> float: ...
    @property
    def trace_context(self) -> str | None: ...


@dataclass(frozen=True, slots=True, eq=False)
class Event(Mapping[str, Any]):
    """One state event as ``queue.subscribe`` listeners receive it.

    Typed fields for what every event has, and a read-only mapping of all of its fields
    (``event["type"]``, ``event.get("attempt")``, ``dict(event)``) for listeners written
    against plain dicts; ``details`` holds what only some kinds carry (``name``, ``queue``,
    ``attempt``, ``result``, ``error``, progress fields, a rescue's ``worker`` …).

    Example::

        def on_event(event: jobkit.Event) -> None:
            if event.type is EventType.FAILED:
                alert(event.job_id, event.get("error"))
    """

    type: EventType
    job_id: int
    details: Mapping[str, Any] = field(default_factory=dict)
    #: For observers (``queue.observe``), never part of the mapping: the attempt the event is about
    #: (a worker's claimed job: ``queue``, ``attempt``, ``run_at``, ``created_at``), when a worker
    #: emitted it. The claimed record itself is passed, so emitting costs nothing more.
    job: AttemptFacts | None = field(default=None, compare=False, repr=False)
    #: Seconds the attempt ran in its slot, on the event that ends it (None when it never started).
    ran: float | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, type: EventType | str, job_id: int, /, **details: Any) -> Event:
        """An event of ``type`` about ``job_id`` with these details (a detail named ``type`` is refused)."""
        if "type" in details or "job_id" in details:
            raise ValueError("an event's details cannot redefine its type or job_id")
        return cls(EventType(type), job_id, details)

    @property
    def name(self) -> str | None:
        """The job's type name, when the event carries it."""
        value = self.details.get("name")
        return value if isinstance(value, str) else None

    def __getitem__(self, key: str) -> Any:
        if key == "type":
            return self.type
        if key == "job_id":
            return self.job_id
        return self.details[key]

    def __iter__(self) -> Iterator[str]:
        yield "type"
        yield "job_id"
        yield from self.details

    def __len__(self) -> int:
        return 2 + len(self.details)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.type, self.job_id))

    def __repr__(self) -> str:
        return f"Event({dict(self.items())!r})"


__all__ = [
    "TERMINAL_STATES",
    "AttemptFacts",
    "CancelReason",
    "Event",
    "EventType",
    "JobState",
    "Request",
    "TransitionKind",
]

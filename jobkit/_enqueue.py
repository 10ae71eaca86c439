"""How a job type is enqueued: per-call options (``Job.set``), their checks, and the route to the queue.

``ConfiguredJob`` is what ``Job.set(...)`` returns; it and ``BaseJob.perform_*`` reach the
queue through the small ``Enqueuer`` protocol, whose process-wide instance the queue layer
registers with :func:`set_enqueuer_factory` (the job API never imports the queue).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from jobkit._handle import JobHandle
from jobkit._payload import at_item, to_json_args
from jobkit._registry import MAX_QUEUE, JobOptions, JobType, int32_problem, name_problem
from jobkit._registry import short_repr as short
from jobkit.errors import MAX_DELAY_SECONDS, EnqueueError, PayloadError

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["CallOptions", "ConfiguredJob", "Enqueuer", "set_enqueuer_factory"]


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call overrides from ``Job.set(...)``."""

    queue: str | None = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: timedelta | None = None


class Enqueuer(Protocol):
    """How the declarative API reaches the queue (the JobQueue implements this)."""

    def enqueue_jobs(
        self,
        job_type: JobType,
        args_list: list[dict[str, Any]],
        call: CallOptions,
        connection: Connection | None,
    ) -> list[JobHandle]:
        """Validate, store and wake workers; returns one handle per job."""
        ...


_enqueuer_factory: Callable[[], Enqueuer] | None = None


def set_enqueuer_factory(factory: Callable[[], Enqueuer]) -> None:
    """Called once by the queue layer so ``perform_later`` finds the process-wide queue."""
    global _enqueuer_factory
    _enqueuer_factory = factory


def _enqueuer() -> Enqueuer:
    if _enqueuer_factory is None:
        raise EnqueueError("jobkit's queue layer is not loaded; import jobkit, not jobkit._job")
    return _enqueuer_factory()


# Run times are stored as epoch seconds and read back as datetimes: a time outside the years
# 1970-9999 would be stored and then break refresh(), queue.jobs() and the CLI.
EARLIEST_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RUN_AT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _aware(when: datetime) -> datetime:
    if not isinstance(when, datetime):
        raise EnqueueError(f"run time must be an aware datetime, got {when!r}")
    if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
        raise EnqueueError(
            f"run time {when.isoformat()} is a naive datetime; pass an aware one, "
            "e.g. datetime.now(UTC) + timedelta(minutes=5)"
        )
    try:
        in_range = EARLIEST_RUN_AT <= when <= LATEST_RUN_AT
    except OverflowError:  # an offset pushing year 1 or 9999 out of range
        in_range = False
    if not in_range:
        raise EnqueueError(f"run time {when.isoformat()} is outside the years 1970 to 9999")
    return when


def _delay(wait: object) -> timedelta:
    """A delay as given to perform_in or set(wait=...), refused unless it is 0 to about 100 years."""
    if isinstance(wait, timedelta):
        seconds = wait.total_seconds()
    elif isinstance(wait, int | float) and not isinstance(wait, bool):
        try:
            seconds = float(wait)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        raise EnqueueError(f"wait must be a timedelta or seconds, got {wait!r}")
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_DELAY_SECONDS):
        raise EnqueueError(
            f"wait must be from 0 to {MAX_DELAY_SECONDS:.0f} seconds (about 100 years), got {wait!r}"
            if math.isfinite(seconds) and seconds >= 0
            else f"wait must be a finite number of seconds and not negative, got {wait!r}"
        )
    return timedelta(seconds=seconds)


def _call_options(
    queue: str | None,
    priority: int | None,
    wait: timedelta | float | None,
    wait_until: datetime | None,
    *,
    job: str = "",
) -> CallOptions:
    """Check per-call options; each error names the job (when given) and the option."""
    try:
        return _checked_call_options(queue, priority, wait, wait_until)
    except EnqueueError as exc:
        if not job:
            raise
        raise EnqueueError(f"{job}: {exc}") from None


def _checked_call_options(
    queue: str | None, priority: int | None, wait: timedelta | float | None, wait_until: datetime | None
) -> CallOptions:
    if wait is not None and wait_until is not None:
        raise EnqueueError("pass either wait= or wait_until=, not both")
    problem = None if queue is None else name_problem("queue", queue, MAX_QUEUE)
    if problem is None and priority is not None:
        problem = int32_problem("priority", priority)
    if problem is not None:
        raise EnqueueError(problem)
    return CallOptions(
        queue=queue,
        priority=priority,
        run_at=None if wait_until is None else _aware(wait_until),
        delay=None if wait is None else _delay(wait),
    )


def args_json(options: JobOptions, args: dict[str, Any], index: int | None, limits: PayloadLimits) -> str:
    """Validate and dump one job's arguments; each error names the argument's path (and the bulk ``index``)."""
    try:
        return to_json_args(
            options.enqueue_schema, args, max_depth=limits.max_payload_depth, max_bytes=limits.max_payload_bytes
        )
    except PayloadError as exc:
        item = "" if index is None else f"item {index}: "
        where = f"argument {exc.where()}" if exc.path else "arguments"
        raise EnqueueError(f"{options.name}: {item}{where}: {exc.reason}") from None
    except ValueError as exc:  # pydantic's ValidationError: in a bulk enqueue, say which item
        if index is None:
            raise
        raise at_item(exc, index, options.name) from None


class PayloadLimits(Protocol):
    """The two settings that bound stored JSON (the queue's Settings)."""

    @property
    def max_payload_depth(self) -> int:
        """Deepest nesting of stored JSON."""
        ...

    @property
    def max_payload_bytes(self) -> int:
        """Largest JSON text stored."""
        ...


class ConfiguredJob:
    """A job type with per-call options; what ``Job.set(...)`` returns."""

    __slots__ = ("_call", "_type")

    def __init__(self, job_type: JobType, call: CallOptions) -> None:
        self._type = job_type
        self._call = call

    def perform_later(self, *, connection: Connection | None = None, **args: Any) -> JobHandle:
        """Validate and enqueue with these options."""
        return _enqueuer().enqueue_jobs(self._type, [args], self._call, connection)[0]

    def perform_all_later(
        self, args_list: Iterable[Mapping[str, Any]], *, connection: Connection | None = None
    ) -> list[JobHandle]:
        """Validate all, then enqueue all in one round trip, with these options."""
        if isinstance(args_list, str | bytes | Mapping):
            raise EnqueueError(
                f"{self._type.name}: perform_all_later takes a list of argument mappings, got {short(args_list)}"
            )
        items: list[dict[str, Any]] = []
        for index, args in enumerate(args_list):
            if not isinstance(args, Mapping):
                raise EnqueueError(
                    f"{self._type.name}: perform_all_later takes one mapping of arguments per job, "
                    f"e.g. [{{'to': 'a@b.c'}}, ...]; item {index} is {short(args)}"
                )
            items.append(dict(args))
        if not items:
            return []
        return _enqueuer().enqueue_jobs(self._type, items, self._call, connection)

    def perform_at(self, when: datetime, *, connection: Connection | None = None, **args: Any) -> JobHandle:
        """Enqueue to run at an aware datetime, with these options."""
        timing = _call_options(None, None, None, when, job=self._type.name)
        call = CallOptions(self._call.queue, self._call.priority, timing.run_at, None)
        return _enqueuer().enqueue_jobs(self._type, [args], call, connection)[0]

    def perform_in(self, delay: timedelta | float, *, connection: Connection | None = None, **args: Any) -> JobHandle:
        """Enqueue to run after ``delay``, with these options."""
        timing = _call_options(None, None, delay, None, job=self._type.name)
        call = CallOptions(self._call.queue, self._call.priority, None, timing.delay)
        return _enqueuer().enqueue_jobs(self._type, [args], call, connection)[0]

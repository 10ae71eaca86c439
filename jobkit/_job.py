"""BaseJob and ``@job``: the declarative API. ``perform_*`` reach the queue through a small protocol."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from jobkit._cancel import CancelToken
from jobkit._handle import JobHandle
from jobkit._payload import BaseModel, ExtraArgs, validate
from jobkit._registry import (
    MAX_QUEUE,
    JobOptions,
    JobType,
    build_options,
    int32_problem,
    name_problem,
    register,
)
from jobkit._registry import short_repr as short
from jobkit.errors import MAX_DELAY_SECONDS, EnqueueError, JobDefinitionError

if TYPE_CHECKING:
    from sqlalchemy import Connection

ArgsT = TypeVar("ArgsT", bound="BaseModel | dict[str, Any]")
J = TypeVar("J", bound="type[BaseJob[Any]]")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A job's last saved checkpoint: the stage it finished and the JSON data it saved."""

    stage: str
    data: Any


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


class Reporter(Protocol):
    """Where a running job's progress and checkpoints go (the runtime implements this)."""

    def progress(self, percent: float, stage: str | None, message: str | None, data: dict[str, Any]) -> None:
        """Record progress (coalesced)."""
        ...

    def checkpoint(self, stage: str, data: Any) -> None:
        """Persist a checkpoint now."""
        ...


class _InlineReporter:
    """Progress and checkpoints of ``perform_now``: kept on the instance, nothing stored."""

    def __init__(self) -> None:
        self.last_progress: dict[str, Any] | None = None

    def progress(self, percent: float, stage: str | None, message: str | None, data: dict[str, Any]) -> None:
        self.last_progress = {"percent": percent, "stage": stage, "message": message, "data": data}

    def checkpoint(self, stage: str, data: Any) -> None:
        pass


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


class _JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Tags each record with ``job_id``, ``job_name`` and ``attempt`` and prefixes its text with them."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return f"[job {extra.get('job_id')} {extra.get('job_name')} #{extra.get('attempt')}] {msg}", kwargs


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


class BaseJob(Generic[ArgsT]):
    """Subclass this, implement ``perform(self, args)``, and declare it with ``@job``.

    Example::

        @job(name="emails.send", schema=EmailArgs, max_retries=3)
        class SendEmail(BaseJob[EmailArgs]):
            def perform(self, args: EmailArgs) -> dict[str, bool]:
                return {"sent": True}
    """

    __jobkit_type__: ClassVar[JobType]

    job_id: int | None
    attempt: int
    cancel_token: CancelToken
    last_checkpoint: Checkpoint | None

    def __init__(
        self,
        *,
        job_id: int | None = None,
        attempt: int = 1,
        cancel_token: CancelToken | None = None,
        last_checkpoint: Checkpoint | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.cancel_token = cancel_token or CancelToken()
        self.last_checkpoint = last_checkpoint
        self._reporter: Reporter = reporter or _InlineReporter()
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger named ``jobkit.job.<name>`` that tags records with the job id and attempt."""
        # Built on first use: most jobs never log, and a logger per run is a cost on every job.
        if self._logger is None:
            declared = getattr(type(self), "__jobkit_type__", None)
            name = declared.name if declared else type(self).__name__
            self._logger = _JobLogger(
                logging.getLogger(f"jobkit.job.{name}"),
                {"job_id": self.job_id, "job_name": name, "attempt": self.attempt},
            )
        return self._logger

    def perform(self, args: ArgsT) -> Any:
        """Do the work; return a JSON-serialisable result. May be ``async def``."""
        raise NotImplementedError(f"{type(self).__name__} must implement perform(self, args)")

    def progress(self, percent: float, stage: str | None = None, message: str | None = None, **data: Any) -> None:
        """Report progress (0-100), visible from any process; writes are coalesced."""
        if not 0 <= percent <= 100:
            raise ValueError(f"progress percent must be between 0 and 100, got {percent}")
        self._reporter.progress(float(percent), stage, message, data)

    def checkpoint(self, stage: str, data: Any = None) -> None:
        """Persist a JSON checkpoint; later attempts see it as ``self.last_checkpoint``."""
        self._reporter.checkpoint(stage, data)
        self.last_checkpoint = Checkpoint(stage, data)

    # -- class-level API --------------------------------------------------------------------

    @classmethod
    def job_type(cls) -> JobType:
        """The registered job type; raises if the class was not declared with ``@job``."""
        job_type = cls.__dict__.get("__jobkit_type__")
        if job_type is None:
            raise JobDefinitionError(f"{cls.__qualname__} is not declared with @job(...)")
        return job_type  # type: ignore[no-any-return]

    @classmethod
    def set(
        cls,
        *,
        queue: str | None = None,
        priority: int | None = None,
        wait: timedelta | float | None = None,
        wait_until: datetime | None = None,
    ) -> ConfiguredJob:
        """Per-call options: ``Job.set(queue="urgent", priority=-5).perform_later(...)``."""
        job_type = cls.job_type()
        return ConfiguredJob(job_type, _call_options(queue, priority, wait, wait_until, job=job_type.name))

    @classmethod
    def perform_later(cls, *, connection: Connection | None = None, **args: Any) -> JobHandle:
        """Validate and enqueue; returns a :class:`JobHandle`. With ``connection``, joins that transaction."""
        return ConfiguredJob(cls.job_type(), CallOptions()).perform_later(connection=connection, **args)

    @classmethod
    def perform_at(cls, when: datetime, *, connection: Connection | None = None, **args: Any) -> JobHandle:
        """Enqueue to run at an aware datetime (naive datetimes are refused)."""
        job_type = cls.job_type()
        call = _call_options(None, None, None, when, job=job_type.name)
        return ConfiguredJob(job_type, call).perform_later(connection=connection, **args)

    @classmethod
    def perform_in(cls, delay: timedelta | float, *, connection: Connection | None = None, **args: Any) -> JobHandle:
        """Enqueue to run after ``delay`` (a timedelta or seconds)."""
        job_type = cls.job_type()
        call = _call_options(None, None, delay, None, job=job_type.name)
        return ConfiguredJob(job_type, call).perform_later(connection=connection, **args)

    @classmethod
    def perform_all_later(
        cls, args_list: Iterable[Mapping[str, Any]], *, connection: Connection | None = None
    ) -> list[JobHandle]:
        """Validate every item first, then enqueue them all in one round trip (all or nothing)."""
        return ConfiguredJob(cls.job_type(), CallOptions()).perform_all_later(args_list, connection=connection)

    @classmethod
    def perform_now(cls, **args: Any) -> Any:
        """Run in the caller now and return the result (or raise the job's exception); nothing is stored."""
        instance, parsed = cls._inline(args)
        outcome = instance.perform(parsed)
        if inspect.isawaitable(outcome):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_await(outcome))
            outcome.close() if inspect.iscoroutine(outcome) else None
            raise JobDefinitionError(
                f"{cls.job_type().name}: perform is async and an event loop is running here; "
                f"use 'await {cls.__name__}.perform_now_async(...)'"
            )
        return outcome

    @classmethod
    async def perform_now_async(cls, **args: Any) -> Any:
        """Async twin of :meth:`perform_now`, for async callers (works for sync jobs too)."""
        instance, parsed = cls._inline(args)
        outcome = instance.perform(parsed)
        if inspect.isawaitable(outcome):
            return await outcome
        return outcome

    @classmethod
    def _inline(cls, args: dict[str, Any]) -> tuple[BaseJob[Any], Any]:
        job_type = cls.job_type()
        return cls(), validate(job_type.options.enqueue_schema, args)


async def _await(awaitable: Any) -> Any:
    return await awaitable


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
                raise EnqueueError(f"{self._type.name}: item {index} is not a mapping of arguments, got {short(args)}")
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


def job(
    name: str | None = None,
    *,
    schema: type[BaseModel] | None = None,
    max_retries: int = 3,
    backoff: Any = "exponential",
    timeout: float | timedelta | None = None,
    queue: str = "default",
    priority: int = 0,
    retry_on: tuple[type[BaseException], ...] = (),
    discard_on: tuple[type[BaseException], ...] = (),
    extra_args: ExtraArgs = "forbid",
) -> Callable[[J], J]:
    """Declare a job class; every option is validated when the class is defined.

    With a ``schema``, an argument the schema does not name is refused at enqueue
    (pydantic's ``extra="forbid"``, so a typo never drops a value silently);
    ``extra_args="ignore"`` drops unknown arguments instead, as pydantic does by default.

    Example::

        @job(name="emails.send", schema=EmailArgs, max_retries=3, backoff="exponential", timeout=30)
        class SendEmail(BaseJob[EmailArgs]): ...
    """

    def decorate(cls: J) -> J:
        job_name = name if name is not None else cls.__qualname__
        if not (isinstance(cls, type) and issubclass(cls, BaseJob)):
            raise JobDefinitionError(f"{job_name}: @job decorates BaseJob subclasses, got {cls!r}")
        if cls.perform is BaseJob.perform:
            raise JobDefinitionError(f"{job_name}: {cls.__qualname__} must implement perform(self, args)")
        options: JobOptions = build_options(
            job_name,
            schema=schema,
            max_retries=max_retries,
            backoff=backoff,
            timeout=timeout,
            queue=queue,
            priority=priority,
            retry_on=retry_on,
            discard_on=discard_on,
            extra_args=extra_args,
        )
        job_type = JobType(
            options=options,
            target=cls,
            is_class=True,
            is_async=inspect.iscoroutinefunction(cls.perform),
            origin=f"{cls.__module__}.{cls.__qualname__}",
        )
        register(job_type)
        cls.__jobkit_type__ = job_type
        return cls

    return decorate

"""BaseJob and ``@job``: the declarative API. ``perform_*`` reach the queue through ``jobkit._enqueue``."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from jobkit._backoff import BackoffSpec
from jobkit._cancel import CancelToken
from jobkit._enqueue import CallOptions, ConfiguredJob, Enqueuer, set_enqueuer_factory
from jobkit._enqueue import _call_options as _call_options  # re-exported: the queue checks set() options with it
from jobkit._handle import JobHandle
from jobkit._payload import BaseModel, ExtraArgs, validate
from jobkit._registry import Isolation, JobOptions, JobType, build_options, register
from jobkit.errors import JobDefinitionError

if TYPE_CHECKING:
    from sqlalchemy import Connection

# CallOptions, ConfiguredJob, Enqueuer and set_enqueuer_factory are re-exported: the queue layer
# imports them from here.
__all__ = [
    "BaseJob",
    "CallOptions",
    "Checkpoint",
    "ConfiguredJob",
    "Enqueuer",
    "JobContext",
    "Reporter",
    "job",
    "set_enqueuer_factory",
]

#: What a duplicate enqueue of a unique job does to the pending job it found.
OnConflict = Literal["skip", "replace", "debounce"]
OnLimit = Literal["wait", "reschedule"]

ArgsT = TypeVar("ArgsT", bound="BaseModel | dict[str, Any]")
J = TypeVar("J", bound="type[BaseJob[Any]]")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A job's last saved checkpoint: the stage it finished and the JSON data it saved."""

    stage: str
    data: Any


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


class _JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Tags each record with ``job_id``, ``job_name`` and ``attempt`` and prefixes its text with them."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return f"[job {extra.get('job_id')} {extra.get('job_name')} #{extra.get('attempt')}] {msg}", kwargs


class _AttemptContext:
    """What a running attempt can do, shared by :class:`JobContext` and :class:`BaseJob`."""

    job_id: int | None
    attempt: int
    cancel_token: CancelToken
    last_checkpoint: Checkpoint | None
    _reporter: Reporter
    _logger: logging.LoggerAdapter[logging.Logger] | None

    def _bind(
        self,
        job_id: int | None,
        attempt: int,
        cancel_token: CancelToken | None,
        last_checkpoint: Checkpoint | None,
        reporter: Reporter | None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.cancel_token = cancel_token or CancelToken()
        self.last_checkpoint = last_checkpoint
        self._reporter = reporter or _InlineReporter()
        self._logger = None

    def _log_name(self) -> str:
        raise NotImplementedError

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger named ``jobkit.job.<name>`` that tags records with the job id and attempt."""
        # Built on first use: most jobs never log, and a logger per run is a cost on every job.
        if self._logger is None:
            name = self._log_name()
            self._logger = _JobLogger(
                logging.getLogger(f"jobkit.job.{name}"),
                {"job_id": self.job_id, "job_name": name, "attempt": self.attempt},
            )
        return self._logger

    def progress(self, percent: float, stage: str | None = None, message: str | None = None, **data: Any) -> None:
        """Report progress (0-100), visible from any process; writes are coalesced."""
        if not 0 <= percent <= 100:
            raise ValueError(f"progress percent must be between 0 and 100, got {percent}")
        self._reporter.progress(float(percent), stage, message, data)

    def checkpoint(self, stage: str, data: Any = None) -> None:
        """Persist a JSON checkpoint; later attempts see it as ``last_checkpoint``."""
        self._reporter.checkpoint(stage, data)
        self.last_checkpoint = Checkpoint(stage, data)


class JobContext(_AttemptContext):
    """What a ``register_handler`` handler receives as its second argument: what ``BaseJob`` has.

    A handler that takes two parameters, ``handler(args, context)`` or ``process(self, args,
    context)``, gets one per attempt; a handler of one parameter is called with ``args`` alone.

    Example::

        def scrape(args: dict, context: JobContext) -> dict:
            context.progress(10, stage="fetch", message=args["url"])
            context.cancel_token.raise_if_cancelled()
            context.checkpoint("fetched", {"bytes": 1024})
            context.logger.info("fetched %s", args["url"])
            return {"ok": True}

        queue.register_handler("web-scraping", scrape)
    """

    def __init__(
        self,
        name: str,
        *,
        job_id: int | None = None,
        attempt: int = 1,
        cancel_token: CancelToken | None = None,
        last_checkpoint: Checkpoint | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.name = name
        self._bind(job_id, attempt, cancel_token, last_checkpoint, reporter)

    def _log_name(self) -> str:
        return self.name


class BaseJob(_AttemptContext, Generic[ArgsT]):
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
        self._bind(job_id, attempt, cancel_token, last_checkpoint, reporter)

    def _log_name(self) -> str:
        declared = getattr(type(self), "__jobkit_type__", None)
        return declared.name if declared else type(self).__name__

    def perform(self, args: ArgsT) -> Any:
        """Do the work; return a JSON-serialisable result. May be ``async def``."""
        raise NotImplementedError(f"{type(self).__name__} must implement perform(self, args)")

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


def job(
    name: str | None = None,
    *,
    schema: type[BaseModel] | None = None,
    max_retries: int = 3,
    backoff: BackoffSpec = "exponential",
    timeout: float | timedelta | None = None,
    queue: str = "default",
    priority: int = 0,
    retry_on: tuple[type[BaseException], ...] = (),
    discard_on: tuple[type[BaseException], ...] = (),
    extra_args: ExtraArgs = "forbid",
    # -- unique jobs (docs/unique-jobs.md)
    unique: bool = False,
    unique_for: timedelta | float | None = None,
    unique_by: tuple[str, ...] | None = None,
    unique_states: Iterable[str] | None = None,
    unique_across_queues: bool = False,
    on_conflict: OnConflict = "skip",
    # -- concurrency keys (docs/queues-and-limits.md)
    concurrency_key: Callable[[Any], str | tuple[str, ...] | list[str]] | None = None,
    concurrency_limit: int | tuple[int, ...] | None = None,
    ordered: bool = False,
    # -- rate limits (docs/queues-and-limits.md)
    rate_limit: str | None = None,
    rate_limit_key: Callable[[Any], str] | None = None,
    weight: int = 1,
    on_limit: OnLimit = "wait",
    cron: str | None = None,
    cron_timezone: str = "UTC",
    cron_args: dict[str, Any] | None = None,
    catchup: Literal["skip", "latest", "all"] = "latest",
    catchup_window: float | timedelta | None = None,
    overlap: Literal["allow", "skip", "cancel_previous"] = "allow",
    isolation: Isolation | None = None,
) -> Callable[[J], J]:
    """Declare a job class; every option is validated when the class is defined.

    With a ``schema``, an argument the schema does not name is refused at enqueue
    (pydantic's ``extra="forbid"``, so a typo never drops a value silently);
    ``extra_args="ignore"`` drops unknown arguments instead, as pydantic does by default.

    ``unique=True`` (or ``unique_for=timedelta(...)``, a window from each job's enqueue) keeps a
    second job with the same name, queue and arguments (``unique_by``: some of them) out while
    one is in ``unique_states`` (default pending and running); a duplicate ``perform_later``
    returns the existing job's handle with ``handle.duplicate`` True, and ``on_conflict`` says
    what it does to a pending one: ``"skip"``, ``"replace"`` (its args, priority and run time)
    or ``"debounce"`` (its run time).

    ``concurrency_key=lambda args: f"account:{args.account_id}"`` with ``concurrency_limit=N``
    (default 1): at most N jobs with the same key run at once, across every worker on every host;
    the others wait pending, in priority order, without spending attempts. Several keys: the key
    function returns a tuple and ``concurrency_limit`` is a tuple of as many limits, one per key;
    a job starts only while every one of its keys has room. ``ordered=True``: one job per key at
    a time, strictly in enqueue order (a later job never overtakes an earlier unfinished one).

    ``rate_limit="100/m"`` (or ``"25/s"``, ``"1000/5m"``, or the name of a limit made with
    ``jobkit.limits.define``): at most that many starts in any sliding window, across every
    worker; ``rate_limit_key`` gives each partition a window of its own, ``weight`` is what one
    start takes, ``on_limit`` is ``"wait"`` (stay pending) or ``"reschedule"`` (move to the next slot).

    With ``cron`` the job also runs on a schedule (see the Scheduling page): ``cron_timezone``
    (default UTC) reads the expression, ``cron_args`` are its arguments (validated against the
    schema now), ``catchup`` / ``catchup_window`` decide what happens to fire times missed while
    no worker ran, and ``overlap`` what happens when the previous run has not finished.

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
            unique=unique,
            unique_for=unique_for,
            unique_by=unique_by,
            unique_states=None if unique_states is None else tuple(unique_states),
            unique_across_queues=unique_across_queues,
            on_conflict=on_conflict,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            cron=cron,
            cron_timezone=cron_timezone,
            cron_args=cron_args,
            catchup=catchup,
            catchup_window=catchup_window,
            overlap=overlap,
            isolation=isolation,
            ordered=ordered,
            rate_limit=rate_limit,
            rate_limit_key=rate_limit_key,
            weight=weight,
            on_limit=on_limit,
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

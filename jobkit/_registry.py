"""Stable job name -> job type: a ``@job`` class or a plugin handler, with its validated options."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from jobkit._backoff import BackoffSpec, Wait, delay_for, make_wait
from jobkit._flow import KeyedBy, key_options, keys_of, rate_spec, rate_window
from jobkit._limits import RateSpec
from jobkit._names import INT32_MAX as INT32_MAX
from jobkit._names import INT32_MIN as INT32_MIN
from jobkit._names import MAX_NAME as MAX_NAME
from jobkit._names import MAX_QUEUE as MAX_QUEUE
from jobkit._names import int32_problem as int32_problem
from jobkit._names import name_problem as name_problem
from jobkit._names import short_repr as short_repr
from jobkit._payload import (
    BaseModel,
    ExtraArgs,
    args_model,
    is_model_class,
    json_schema,
)
from jobkit._recurrence import Recurrence, build_recurrence
from jobkit._unique import UniqueOptions, unique_options
from jobkit.errors import EnqueueError, JobDefinitionError

#: Where a job runs: an executor thread, or a child process (hard timeouts, crash containment).
Isolation = Literal["thread", "process"]


@dataclass(frozen=True, slots=True)
class JobOptions:
    """A job type's validated options, as given to ``@job`` or ``register_handler``."""

    name: str
    schema: type[BaseModel] | None = None
    max_retries: int = 3
    backoff: BackoffSpec = "exponential"
    timeout: float | None = None
    queue: str = "default"
    priority: int = 0
    retry_on: tuple[type[BaseException], ...] = ()
    discard_on: tuple[type[BaseException], ...] = ()
    extra_args: ExtraArgs = "forbid"
    #: Set for unique jobs (``unique=True`` or ``unique_for``).
    unique: UniqueOptions | None = None
    #: ``concurrency_key``: the validated arguments -> the key; at most ``concurrency_limit`` jobs
    #: holding one key run at once, across every worker.
    concurrency_key: Callable[[Any], str] | None = field(default=None, compare=False)
    #: One limit for every key, or one per key (``concurrency_key`` then returns that many keys).
    concurrency_limit: int | tuple[int, ...] = 1
    #: ``ordered=True``: one job per key at a time, strictly in enqueue order.
    ordered: bool = False
    #: ``rate_limit``: a spec (``"100/m"``) or the name of a shared limit (``limits.define``).
    rate_limit: str | None = None
    #: The parsed spec of an inline ``rate_limit`` (None for a named one, resolved at enqueue).
    rate_spec: RateSpec | None = None
    #: ``rate_limit_key``: the validated arguments -> a partition; each has a window of its own.
    rate_limit_key: Callable[[Any], str] | None = field(default=None, compare=False)
    #: How much of the window one start of this type takes.
    weight: int = 1
    #: ``"wait"`` (stay pending until the window has room) or ``"reschedule"`` (run_at moves to the next slot).
    on_limit: str = "wait"
    #: "thread" or "process"; None: the worker's pool decides (``pool`` setting).
    isolation: Isolation | None = None
    wait: Wait = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    #: The model enqueue validates with (``schema``, or a subclass refusing unknown keywords).
    args_model: type[BaseModel] | None = field(default=None, repr=False, compare=False)
    #: The schedule declared with ``@job(cron=...)``, upserted under the job's name at worker start.
    recurrence: Recurrence | None = None

    @property
    def enqueue_schema(self) -> type[BaseModel] | None:
        """The model arguments are validated with before they are stored (or run by ``perform_now``)."""
        return self.args_model or self.schema

    def key_of(self, args_json: str) -> str:
        """The (first) concurrency key of a job with these stored arguments, validated as the worker will see them."""
        return self.keys_of(args_json).key

    def rate_of(self, args_json: str) -> tuple[str, RateSpec, int] | None:
        """The rate-limit window a job with these stored arguments starts in: its key, spec and weight."""
        if self.rate_limit is None:
            return None
        return rate_window(
            self.name, self.schema, self.rate_limit, self.rate_spec, self.rate_limit_key, self.weight, args_json
        )

    def keys_of(self, args_json: str) -> KeyedBy:
        """The concurrency keys of a job with these stored arguments, as its row stores them."""
        if self.concurrency_key is None:
            raise EnqueueError(f"{self.name}: has no concurrency_key")
        return keys_of(self.name, self.schema, self.concurrency_key, self.concurrency_limit, self.ordered, args_json)

    @property
    def gated_by_keys(self) -> bool:
        """Whether its keys need the gated claim: several keys, or ``ordered``."""
        return self.ordered or isinstance(self.concurrency_limit, tuple)

    def backoff_seconds(self, attempt: int) -> float:
        """Seconds to wait before retrying after ``attempt`` failed."""
        return delay_for(self.wait, attempt)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for ``queue.job_types()`` and the CLI."""
        backoff = self.backoff if isinstance(self.backoff, str) else type(self.backoff).__name__
        described = {
            "name": self.name,
            "schema": None if self.schema is None else self.schema.__name__,
            "max_retries": self.max_retries,
            "backoff": backoff,
            "timeout": self.timeout,
            "queue": self.queue,
            "priority": self.priority,
            "retry_on": [e.__name__ for e in self.retry_on],
            "discard_on": [e.__name__ for e in self.discard_on],
            "isolation": self.isolation,
        }
        if self.recurrence is not None:  # only scheduled types say so: the summary of others is unchanged
            described["cron"] = self.recurrence.cron
            described["cron_timezone"] = self.recurrence.timezone
        return described


def build_options(
    name: str,
    *,
    schema: Any = None,
    max_retries: Any = 3,
    backoff: BackoffSpec = "exponential",
    timeout: Any = None,
    queue: Any = "default",
    priority: Any = 0,
    retry_on: Any = (),
    discard_on: Any = (),
    extra_args: Any = "forbid",
    unique: Any = False,
    unique_for: Any = None,
    unique_by: Any = None,
    unique_states: Any = None,
    unique_across_queues: Any = False,
    on_conflict: Any = "skip",
    concurrency_key: Any = None,
    concurrency_limit: Any = None,
    cron: Any = None,
    cron_timezone: Any = "UTC",
    cron_args: Any = None,
    catchup: Any = "latest",
    catchup_window: Any = None,
    overlap: Any = "allow",
    isolation: Any = None,
    ordered: Any = False,
    rate_limit: Any = None,
    rate_limit_key: Any = None,
    weight: Any = 1,
    on_limit: Any = "wait",
) -> JobOptions:
    """Validate every option, naming the job and the option in each error."""

    def bad(option: str, why: str) -> JobDefinitionError:
        return JobDefinitionError(f"{name}: {option} {why}")

    problem = name_problem("name", name, MAX_NAME)
    if problem is not None:
        raise JobDefinitionError(f"{short_repr(name)}: {problem}")
    if schema is not None and not is_model_class(schema):
        raise bad("schema", f"must be a pydantic BaseModel subclass, got {schema!r}")
    if extra_args not in ("forbid", "ignore"):
        raise bad("extra_args", f"must be 'forbid' or 'ignore', got {short_repr(extra_args)}")
    if isolation not in (None, "thread", "process"):
        raise bad("isolation", f"must be 'thread' or 'process', got {short_repr(isolation)}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise bad("max_retries", f"must be >= 0, got {max_retries!r}")
    if max_retries > INT32_MAX:
        raise bad("max_retries", f"must be at most {INT32_MAX}, got {max_retries}")
    try:
        wait = make_wait(backoff)
    except ValueError as exc:
        raise bad("backoff", f"is invalid: {exc}") from None
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise bad("timeout", f"must be a positive number of seconds or a timedelta, got {timeout!r}")
    for problem in (name_problem("queue", queue, MAX_QUEUE), int32_problem("priority", priority)):
        if problem is not None:
            raise JobDefinitionError(f"{name}: {problem}")
    spec = rate_spec(bad, rate_limit, rate_limit_key, weight, on_limit)
    limit = key_options(bad, concurrency_key, concurrency_limit, ordered)
    for option, value in (("retry_on", retry_on), ("discard_on", discard_on)):
        if not isinstance(value, tuple) or not all(isinstance(e, type) and issubclass(e, BaseException) for e in value):
            raise bad(option, f"must be a tuple of exception classes, got {value!r}")
    recurrence = None
    if cron is not None:
        model = None if schema is None else args_model(schema, extra_args)
        recurrence = build_recurrence(
            name,
            cron=cron,
            timezone=cron_timezone,
            args=cron_args,
            catchup=catchup,
            catchup_window=catchup_window,
            overlap=overlap,
            schema=model,
        )
    else:
        given = {
            "cron_timezone": cron_timezone != "UTC",
            "cron_args": cron_args is not None,
            "catchup": catchup != "latest",
            "catchup_window": catchup_window is not None,
            "overlap": overlap != "allow",
        }
        if stray := [option for option, set_ in given.items() if set_]:
            raise bad(", ".join(stray), "only apply to a job declared with cron=...")
    return JobOptions(
        name=name,
        schema=schema,
        max_retries=max_retries,
        backoff=backoff,
        timeout=None if timeout is None else float(timeout),
        queue=queue,
        priority=priority,
        retry_on=retry_on,
        discard_on=discard_on,
        extra_args=extra_args,
        unique=unique_options(
            name,
            schema,
            unique=unique,
            unique_for=unique_for,
            unique_by=unique_by,
            unique_states=unique_states,
            unique_across_queues=unique_across_queues,
            on_conflict=on_conflict,
        ),
        concurrency_key=concurrency_key,
        concurrency_limit=limit,
        ordered=ordered,
        rate_limit=rate_limit,
        rate_spec=spec,
        rate_limit_key=rate_limit_key,
        weight=weight,
        on_limit=on_limit,
        isolation=isolation,
        wait=wait,
        args_model=None if schema is None else args_model(schema, extra_args),
        recurrence=recurrence,
    )


@dataclass(frozen=True, slots=True)
class JobType:
    """What the worker needs to run one kind of job: its options and how to call it.

    ``target`` is a ``BaseJob`` subclass or a plugin handler (a callable, or an object
    with ``process(args)`` and optionally ``on_error(exc, args)``).
    """

    options: JobOptions
    target: Any
    is_class: bool
    is_async: bool
    origin: str
    #: A handler that takes a second parameter receives a ``JobContext`` in it (progress, checkpoint, token, logger).
    takes_context: bool = False

    @property
    def name(self) -> str:
        """The stable job name stored in the database."""
        return self.options.name

    def describe(self) -> dict[str, Any]:
        """The options, the arguments' JSON schema and the result type, for ``job_types()`` and the CLI."""
        schema = self.options.schema
        return {
            **self.options.describe(),
            "kind": "job" if self.is_class else "handler",
            "args_schema": None if schema is None else json_schema(schema),
            "result": result_type(self.entry_point()),
        }

    def entry_point(self) -> Callable[..., Any] | None:
        """The function that does the work: ``perform``, ``process``, or the handler itself."""
        if self.is_class:
            perform: Callable[..., Any] = self.target.perform
            return perform
        call: Callable[..., Any] | None = getattr(self.target, "process", None)
        return call if call is not None else (self.target if callable(self.target) else None)


def result_type(fn: Callable[..., Any] | None) -> str | None:
    """The declared return type of ``fn`` as written (``dict[str, int]``), or None when it has none."""
    if fn is None:
        return None
    try:
        annotation = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return None
    if annotation is inspect.Signature.empty:
        return None
    if isinstance(annotation, str):  # `from __future__ import annotations`: the text as written
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


_lock = threading.Lock()
_types: dict[str, JobType] = {}


def _origin(target: Any) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__qualname__)}"


def register(job_type: JobType) -> None:
    """Add a job type; the same origin again (a module reload) replaces it, another origin is an error."""
    with _lock:
        existing = _types.get(job_type.name)
        if existing is not None and existing.origin != job_type.origin:
            raise JobDefinitionError(
                f"{job_type.name}: name is already registered by {existing.origin}; "
                f"cannot register {job_type.origin} under the same name"
            )
        _types[job_type.name] = job_type


def unregister(name: str) -> None:
    """Forget a job type (for tests and plugin unloading)."""
    with _lock:
        _types.pop(name, None)


def lookup(name: str) -> JobType | None:
    """The job type registered under ``name``, or None."""
    return _types.get(name)


def all_types() -> dict[str, JobType]:
    """A snapshot of every registered job type."""
    with _lock:
        return dict(_types)


def describe_types() -> dict[str, dict[str, Any]]:
    """Every job type registered in this process, described (options, schema, result), by name."""
    return {name: t.describe() for name, t in sorted(all_types().items())}


def handler_type(name: str, handler: Any, **options: Any) -> JobType:
    """Describe a plugin handler: a callable ``handler(args)`` or an object with ``process(args)``."""
    call: Callable[..., Any] | None = getattr(handler, "process", None)
    if call is None and callable(handler):
        call = handler
    if call is None:
        raise JobDefinitionError(f"{name}: handler must be callable or have a process(args) method, got {handler!r}")
    opts = build_options(name, **options)
    return JobType(
        options=opts,
        target=handler,
        is_class=False,
        is_async=inspect.iscoroutinefunction(call),
        origin=_origin(handler),
        takes_context=_takes_context(call),
    )


def _takes_context(call: Callable[..., Any]) -> bool:
    """Whether ``call`` accepts a second positional argument (``args, context``) besides ``args``."""
    try:
        parameters = list(inspect.signature(call).parameters.values())
    except (TypeError, ValueError):  # no signature to read: call it as before, with args alone
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2

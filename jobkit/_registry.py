"""Stable job name -> job type: a ``@job`` class or a plugin handler, with its validated options."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from jobkit._backoff import BackoffSpec, Wait, delay_for, make_wait
from jobkit._payload import BaseModel, ExtraArgs, args_model, is_model_class
from jobkit.errors import JobDefinitionError

#: Where a job runs: an executor thread, or a child process (hard timeouts, crash containment).
Isolation = Literal["thread", "process"]

#: The lengths of the ``name`` and ``queue`` columns (jobkit/_store/schema.py; a test keeps them equal).
MAX_NAME = 200
MAX_QUEUE = 100
#: Priorities and retry counts are stored in 32-bit integer columns.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_problem(field: str, value: Any, limit: int) -> str | None:
    """Why ``value`` cannot be stored as a name of at most ``limit`` characters, or None if it can.

    The same rule on both databases: PostgreSQL refuses NUL and text that is not UTF-8, and
    SQLite would store them (or truncate at the NUL), so both are refused before either sees them.
    """
    if not isinstance(value, str):
        return f"{field} must be a string, got {short_repr(value)}"
    if not value.strip():
        return f"{field} must be a non-empty string, got {short_repr(value)}"
    if len(value) > limit:
        return f"{field} must be at most {limit} characters, got {len(value)}: {short_repr(value)}"
    if "\x00" in value:
        return f"{field} must not contain NUL characters, got {short_repr(value)}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{field} must be valid Unicode text (it holds a lone surrogate), got {short_repr(value)}"
    return None


def int32_problem(field: str, value: Any, *, minimum: int = INT32_MIN) -> str | None:
    """Why ``value`` cannot be stored in a 32-bit integer column (bool refused), or None if it can."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{field} must be an int, got {short_repr(value)}"
    if not minimum <= value <= INT32_MAX:
        return f"{field} must be between {minimum} and {INT32_MAX}, got {value}"
    return None


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
    #: "thread" or "process"; None: the worker's pool decides (``pool`` setting).
    isolation: Isolation | None = None
    wait: Wait = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    #: The model enqueue validates with (``schema``, or a subclass refusing unknown keywords).
    args_model: type[BaseModel] | None = field(default=None, repr=False, compare=False)

    @property
    def enqueue_schema(self) -> type[BaseModel] | None:
        """The model arguments are validated with before they are stored (or run by ``perform_now``)."""
        return self.args_model or self.schema

    def backoff_seconds(self, attempt: int) -> float:
        """Seconds to wait before retrying after ``attempt`` failed."""
        return delay_for(self.wait, attempt)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for ``queue.job_types()`` and the CLI."""
        backoff = self.backoff if isinstance(self.backoff, str) else type(self.backoff).__name__
        return {
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
    isolation: Any = None,
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
    for option, value in (("retry_on", retry_on), ("discard_on", discard_on)):
        if not isinstance(value, tuple) or not all(isinstance(e, type) and issubclass(e, BaseException) for e in value):
            raise bad(option, f"must be a tuple of exception classes, got {value!r}")
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
        isolation=isolation,
        wait=wait,
        args_model=None if schema is None else args_model(schema, extra_args),
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

    @property
    def name(self) -> str:
        """The stable job name stored in the database."""
        return self.options.name


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
    )

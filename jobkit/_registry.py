"""Stable job name -> job type: a ``@job`` class or a plugin handler, with its validated options."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any

from jobkit._backoff import BackoffSpec, Wait, delay_for, make_wait
from jobkit._payload import BaseModel, ExtraArgs, args_model, is_model_class, json_schema
from jobkit.errors import JobDefinitionError

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


#: The entry-point group plugin packages list their job modules (or set-up functions) in.
PLUGIN_GROUP = "jobkit.plugins"
_loaded_plugins: set[str] = set()


class Registrar:
    """What a plugin's set-up function receives: ``register_handler`` as on the queue.

    Example (a plugin's ``pyproject.toml``: ``[project.entry-points."jobkit.plugins"] scrape = "scrape:setup"``)::

        def setup(registry):
            registry.register_handler("web-scraping", Scraper(), queue="scrape")
    """

    def register_handler(self, name: str, handler: Any, **options: Any) -> None:
        """Register a job type from a callable or an object with ``process(args)`` (and ``on_error``)."""
        register(handler_type(name, handler, **options))


def load_plugins(warn: Callable[[str], None] | None = None) -> list[str]:
    """Load every ``jobkit.plugins`` entry point not loaded yet in this process; returns their names.

    An entry point names a module (imported: its ``@job`` classes register themselves) or a
    callable, called with a :class:`Registrar`. A plugin that fails to load is reported through
    ``warn`` and skipped, so one broken package cannot stop a worker; it is tried again next time.
    """
    loaded: list[str] = []
    for plugin in entry_points(group=PLUGIN_GROUP):
        key = f"{plugin.name}={plugin.value}"
        if key in _loaded_plugins:
            continue
        try:
            target = plugin.load()
            if callable(target) and not inspect.isclass(target):
                target(Registrar())
        except Exception as exc:
            if warn is not None:
                warn(f"plugin {plugin.name!r} ({plugin.value}) failed to load: {type(exc).__name__}: {exc}")
            continue
        _loaded_plugins.add(key)
        loaded.append(plugin.name)
    return loaded


def require_type(name: str, warn: Callable[[str], None] | None = None) -> JobType:
    """The job type registered as ``name``, loading plugins first if it is not (yet); LookupError if none is."""
    job_type = _types.get(name) if isinstance(name, str) else None
    if job_type is None and isinstance(name, str):
        load_plugins(warn)  # a plugin's type, in a process that has not loaded plugins yet
        job_type = _types.get(name)
    if job_type is None:
        raise LookupError(f"no job type named {name!r} is registered")
    return job_type

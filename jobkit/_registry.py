"""Stable job name -> job type: a ``@job`` class or a plugin handler, with its validated options."""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any, Literal

from jobkit._backoff import BackoffSpec, Wait, delay_for, make_wait
from jobkit._cron import CronSpec, parse_cron
from jobkit._flow import KeyedBy, key_options, keys_of, rate_spec, rate_window
from jobkit._limits import RateSpec
from jobkit._names import INT32_MAX as INT32_MAX
from jobkit._names import INT32_MIN as INT32_MIN
from jobkit._names import int32_problem as int32_problem
from jobkit._names import name_problem as name_problem
from jobkit._names import short_repr as short_repr
from jobkit._payload import (
    BaseModel,
    ExtraArgs,
    args_model,
    is_model_class,
    json_schema,
    stored_keys,
    to_json_args,
)
from jobkit._vocabulary import JobState
from jobkit.errors import EnqueueError, JobDefinitionError, PayloadError

#: Where a job runs: an executor thread, or a child process (hard timeouts, crash containment).
Isolation = Literal["thread", "process"]

#: The lengths of the ``name`` and ``queue`` columns (jobkit/_store/schema.py; a test keeps them equal).
MAX_NAME = 200
MAX_QUEUE = 100
#: What a duplicate enqueue of a unique job does to the pending job it found.
ON_CONFLICT = ("skip", "replace", "debounce")
#: The states a unique job always holds its key in: retries and rescues move a job from running
#: back to pending, and that write must never meet a duplicate that took the key meanwhile.
ALWAYS_UNIQUE_IN = frozenset({JobState.PENDING, JobState.RUNNING})


@dataclass(frozen=True, slots=True)
class UniqueOptions:
    """How a unique job is recognised (its key) and what a duplicate does."""

    #: The stored argument keys the key is made of; None: all of them.
    by: tuple[str, ...] | None = None
    #: The states in which a job keeps duplicates out (always pending and running).
    states: frozenset[str] = ALWAYS_UNIQUE_IN
    #: One job per key across every queue, rather than per queue.
    across_queues: bool = False
    #: ``unique_for``: a job holds its key only this many seconds after it was enqueued.
    window: float | None = None
    on_conflict: str = "skip"

    def key(self, name: str, queue: str, args_json: str) -> str:
        """The unique key of a job with these stored arguments: a digest of its name, queue and chosen arguments."""
        args = json.loads(args_json)
        if self.by is not None and isinstance(args, dict):
            args = {key: args.get(key) for key in self.by}
        material = json.dumps(
            [name, None if self.across_queues else queue, args], sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(material.encode()).hexdigest()


#: What a schedule does with fire times missed while no scheduler ran, and with a run still going.
CATCHUP_POLICIES = ("skip", "latest", "all")
OVERLAP_POLICIES = ("allow", "skip", "cancel_previous")


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A validated schedule: when (``spec``), with which arguments, and its catch-up and overlap policies.

    ``catchup_window`` (seconds) is how late a fire may still be made; None means one period of
    the schedule for ``latest`` and ``all``, and the same bounded by a minute for ``skip``.
    """

    spec: CronSpec
    args: dict[str, Any]
    args_json: str
    catchup: str = "latest"
    catchup_window: float | None = None
    overlap: str = "allow"
    queue: str | None = None

    @property
    def cron(self) -> str:
        """The expression as declared."""
        return self.spec.expression

    @property
    def timezone(self) -> str:
        """The IANA timezone the expression is read in."""
        return self.spec.timezone


def build_recurrence(
    name: str,
    *,
    cron: Any,
    timezone: Any = "UTC",
    args: Any = None,
    catchup: Any = "latest",
    catchup_window: Any = None,
    overlap: Any = "allow",
    queue: Any = None,
    schema: type[BaseModel] | None = None,
) -> Recurrence:
    """Validate a schedule's options (the expression, timezone, arguments against ``schema``), naming ``name``."""
    try:
        spec = parse_cron(cron, timezone)
    except ValueError as exc:
        raise JobDefinitionError(f"{name}: {exc}") from None
    if args is None:
        args = {}
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        raise JobDefinitionError(f"{name}: cron_args must be a dict of arguments, got {short_repr(args)}")
    try:
        args_json = to_json_args(schema, args)
    except (PayloadError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise JobDefinitionError(f"{name}: cron_args are invalid: {exc}") from None
    if catchup not in CATCHUP_POLICIES:
        raise JobDefinitionError(f"{name}: catchup must be one of {CATCHUP_POLICIES}, got {short_repr(catchup)}")
    if overlap not in OVERLAP_POLICIES:
        raise JobDefinitionError(f"{name}: overlap must be one of {OVERLAP_POLICIES}, got {short_repr(overlap)}")
    if isinstance(catchup_window, timedelta):
        catchup_window = catchup_window.total_seconds()
    if catchup_window is not None and (
        isinstance(catchup_window, bool) or not isinstance(catchup_window, int | float) or catchup_window <= 0
    ):
        raise JobDefinitionError(
            f"{name}: catchup_window must be a positive number of seconds or a timedelta, got {catchup_window!r}"
        )
    if queue is not None and (problem := name_problem("queue", queue, MAX_QUEUE)) is not None:
        raise JobDefinitionError(f"{name}: {problem}")
    window = None if catchup_window is None else float(catchup_window)
    return Recurrence(spec, dict(args), args_json, catchup, window, overlap, queue)


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
        unique=_unique_options(
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


def _unique_options(
    name: str,
    schema: type[BaseModel] | None,
    *,
    unique: Any,
    unique_for: Any,
    unique_by: Any,
    unique_states: Any,
    unique_across_queues: Any,
    on_conflict: Any,
) -> UniqueOptions | None:
    """The unique options, or None for a job that is not unique; every error names the job and the option."""

    def bad(option: str, why: str) -> JobDefinitionError:
        return JobDefinitionError(f"{name}: {option} {why}")

    if not isinstance(unique, bool):
        raise bad("unique", f"must be True or False, got {short_repr(unique)}")
    window: float | None = None
    if unique_for is not None:
        seconds = unique_for.total_seconds() if isinstance(unique_for, timedelta) else unique_for
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < float("inf"):
            raise bad("unique_for", f"must be a positive timedelta or number of seconds, got {short_repr(unique_for)}")
        window = float(seconds)
    if not unique and window is None:
        given = [
            option
            for option, value, default in (
                ("unique_by", unique_by, None),
                ("unique_states", unique_states, None),
                ("unique_across_queues", unique_across_queues, False),
                ("on_conflict", on_conflict, "skip"),
            )
            if value != default
        ]
        if given:
            raise bad(given[0], "applies to unique jobs only; add unique=True or unique_for=...")
        return None
    if on_conflict not in ON_CONFLICT:
        raise bad("on_conflict", f"must be one of {', '.join(map(repr, ON_CONFLICT))}, got {short_repr(on_conflict)}")
    if not isinstance(unique_across_queues, bool):
        raise bad("unique_across_queues", f"must be True or False, got {short_repr(unique_across_queues)}")
    return UniqueOptions(
        by=_unique_by(bad, schema, unique_by),
        states=_unique_states(bad, unique_states),
        across_queues=unique_across_queues,
        window=window,
        on_conflict=on_conflict,
    )


def _unique_by(
    bad: Callable[[str, str], Exception], schema: type[BaseModel] | None, value: Any
) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, tuple | list) or not value:
        raise bad("unique_by", f"must be a non-empty tuple of argument names, got {short_repr(value)}")
    if not all(isinstance(field, str) and field for field in value):
        raise bad("unique_by", f"must name arguments as strings, got {short_repr(value)}")
    if schema is None:
        return tuple(value)
    keys = stored_keys(schema)
    unknown = [field for field in value if field not in keys]
    if unknown:
        raise bad("unique_by", f"names {', '.join(unknown)}, not fields of {schema.__name__} ({', '.join(keys)})")
    return tuple(keys[field] for field in value)


def _unique_states(bad: Callable[[str, str], Exception], value: Any) -> frozenset[str]:
    if value is None:
        return ALWAYS_UNIQUE_IN
    if isinstance(value, str) or not isinstance(value, tuple | list | set | frozenset):
        raise bad("unique_states", f"must be a collection of job states, got {short_repr(value)}")
    states = {JobState.parse(state) for state in value}
    if None in states:
        raise bad("unique_states", f"must name job states ({', '.join(JobState)}), got {short_repr(value)}")
    missing = ALWAYS_UNIQUE_IN - states
    if missing:
        raise bad(
            "unique_states",
            f"must include {' and '.join(sorted(missing))}: a retried or rescued job goes back to pending "
            "and must keep its key",
        )
    return frozenset(str(state) for state in states if state is not None)


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

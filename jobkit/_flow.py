"""Flow-control options of a job type: concurrency keys (one, several, ordered) and rate limits.

Validated when the class is defined (each error names the job and the option); evaluated per
job at enqueue, on the arguments as the worker will see them, into what its row stores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from jobkit import _limits
from jobkit._limits import RateSpec
from jobkit._names import int32_problem, name_problem, short_repr
from jobkit._payload import BaseModel, loads, validate
from jobkit.errors import EnqueueError

#: What a claim does with a job whose rate limit's window is full.
ON_LIMIT = ("wait", "reschedule")
#: The length of the ``concurrency_key`` and ``rate_key`` columns.
MAX_KEY = 200
#: Keys one job may hold at most.
MAX_KEYS = 8

Bad = Callable[[str, str], Exception]


class KeyedBy(NamedTuple):
    """What a job's row stores for its concurrency keys: the first key and limit, every key (JSON), ordered."""

    key: str
    limit: int
    #: ``[[key, limit], ...]`` for a job with several keys; else None.
    extra: str | None
    ordered: bool


def key_options(bad: Bad, key: Any, limit: Any, ordered: Any) -> int | tuple[int, ...]:
    """The validated ``concurrency_limit``: one int for every key, or one per key (a tuple)."""
    if key is not None and not callable(key):
        raise bad("concurrency_key", f"must be a callable args -> str, got {short_repr(key)}")
    if not isinstance(ordered, bool):
        raise bad("ordered", f"must be True or False, got {short_repr(ordered)}")
    if key is None:
        if limit is not None:
            raise bad("concurrency_limit", "applies to jobs with a concurrency_key only")
        if ordered:
            raise bad("ordered", "applies to jobs with a concurrency_key only")
        return 1
    if limit is None:
        return 1
    if isinstance(limit, tuple):
        if not 1 <= len(limit) <= MAX_KEYS:
            raise bad("concurrency_limit", f"must give 1 to {MAX_KEYS} limits, one per key, got {short_repr(limit)}")
        if ordered:
            raise bad("ordered", "applies to jobs with one concurrency key (an int concurrency_limit)")
        for n in limit:
            problem = int32_problem("concurrency_limit", n, minimum=1)
            if problem is not None:
                raise bad("concurrency_limit", problem.removeprefix("concurrency_limit "))
        return tuple(int(n) for n in limit)
    problem = int32_problem("concurrency_limit", limit, minimum=1)
    if problem is not None:
        raise bad("concurrency_limit", problem.removeprefix("concurrency_limit "))
    if ordered and limit != 1:
        raise bad("ordered", f"runs one job per key at a time; concurrency_limit must be 1, got {limit}")
    return int(limit)


def keys_of(
    name: str,
    schema: type[BaseModel] | None,
    key: Callable[[Any], Any],
    limit: int | tuple[int, ...],
    ordered: bool,
    args_json: str,
) -> KeyedBy:
    """A job's concurrency keys from its stored arguments; EnqueueError naming the job when they are wrong."""
    try:
        value = key(validate(schema, loads(args_json)))
    except Exception as exc:
        raise EnqueueError(f"{name}: concurrency_key raised {type(exc).__name__}: {exc}") from exc
    if isinstance(limit, tuple):
        if not isinstance(value, tuple | list) or len(value) != len(limit):
            raise EnqueueError(
                f"{name}: concurrency_key must return {len(limit)} keys (one per concurrency_limit), got {short_repr(value)}"
            )
        keys = list(value)
    else:
        keys = [value]
    for k in keys:
        problem = name_problem("concurrency_key", k, MAX_KEY)
        if problem is not None:
            raise EnqueueError(f"{name}: {problem}")
    if len(set(keys)) != len(keys):
        raise EnqueueError(f"{name}: concurrency_key returned the same key twice: {short_repr(value)}")
    limits = list(limit) if isinstance(limit, tuple) else [limit]
    extra = json.dumps([[k, n] for k, n in zip(keys, limits, strict=True)]) if isinstance(limit, tuple) else None
    return KeyedBy(keys[0], limits[0], extra, ordered)


def rate_spec(bad: Bad, rate_limit: Any, key: Any, weight: Any, on_limit: Any) -> RateSpec | None:
    """The parsed inline spec (None for none, or for a named limit); every error names the job and the option."""
    if rate_limit is None:
        defaults = (("rate_limit_key", key, None), ("weight", weight, 1), ("on_limit", on_limit, "wait"))
        given = [option for option, value, default in defaults if value != default]
        if given:
            raise bad(given[0], "applies to jobs with a rate_limit only")
        return None
    if not isinstance(rate_limit, str):
        raise bad("rate_limit", f"must be a spec like '100/m' or a limit's name, got {short_repr(rate_limit)}")
    if key is not None and not callable(key):
        raise bad("rate_limit_key", f"must be a callable args -> str, got {short_repr(key)}")
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise bad("weight", f"must be an int >= 1, got {short_repr(weight)}")
    if on_limit not in ON_LIMIT:
        raise bad("on_limit", f"must be one of {', '.join(map(repr, ON_LIMIT))}, got {short_repr(on_limit)}")
    if not _limits.is_spec(rate_limit):
        problem = _limits.name_problem(rate_limit)
        if problem is not None:
            raise bad("rate_limit", f"is neither a spec like '100/m' nor a limit's name: {problem}")
        return None
    try:
        spec = _limits.parse_rate(rate_limit)
    except ValueError as exc:
        raise bad("rate_limit", f"is invalid: {exc}") from None
    if weight > spec.count:
        raise bad("weight", f"{weight} exceeds the rate limit's {spec.count} starts per window: it could never run")
    return spec


def rate_window(
    name: str,
    schema: type[BaseModel] | None,
    rate_limit: str,
    spec: RateSpec | None,
    key: Callable[[Any], Any] | None,
    weight: int,
    args_json: str,
) -> tuple[str, RateSpec, int]:
    """The window a job with these stored arguments starts in: its key, spec and weight.

    A named limit is looked up now, at enqueue, and the row carries its spec, so every worker
    enforces the numbers the job was enqueued under.
    """
    base = name
    if spec is None:
        base = rate_limit
        spec = _limits.named(base)
        if spec is None:
            raise EnqueueError(f"{name}: rate limit {base!r} is not defined (jobkit.limits.define)")
    if weight > spec.count:
        raise EnqueueError(f"{name}: weight {weight} exceeds rate limit {base!r} ({spec})")
    window = base
    if key is not None:
        try:
            part = key(validate(schema, loads(args_json)))
        except Exception as exc:
            raise EnqueueError(f"{name}: rate_limit_key raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(part, str):
            raise EnqueueError(f"{name}: rate_limit_key must return a string, got {short_repr(part)}")
        window = f"{base}:{part}"
    problem = name_problem("rate limit key", window, MAX_KEY)
    if problem is not None:
        raise EnqueueError(f"{name}: {problem}")
    return window, spec, weight

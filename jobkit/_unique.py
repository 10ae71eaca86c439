"""Unique jobs' options: how a job's unique key is made, and the checks of ``@job(unique=...)``.

See docs/unique-jobs.md. The store enforces uniqueness (a partial unique index over each row's
own unique states); this module only decides, from the declaration, what the key covers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jobkit._names import short_repr
from jobkit._payload import BaseModel, stored_keys
from jobkit._vocabulary import JobState
from jobkit.errors import JobDefinitionError

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


def unique_options(
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
        by=unique_by_fields(bad, schema, unique_by),
        states=unique_states_of(bad, unique_states),
        across_queues=unique_across_queues,
        window=window,
        on_conflict=on_conflict,
    )


def unique_by_fields(
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


def unique_states_of(bad: Callable[[str, str], Exception], value: Any) -> frozenset[str]:
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

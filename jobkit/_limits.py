"""Rate limit specs and named shared limits: ``"100/m"``, ``"25/s"``, ``"1000/5m"``, ``define("stripe", "25/s")``.

A spec says how many starts (weighted) a sliding window of ``period`` seconds may hold. Named
limits live in this process's table, filled by :func:`define` at import time, like job types;
each job row carries the spec it was enqueued under (the store enforces it from the rows and a
table of starts), so every worker applies the same numbers whatever it has defined.
Standard library only: the job API validates with it, the facade resolves names with it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

#: Seconds per unit of a spec's period.
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The length of the ``rate_key`` column (jobkit/_store/schema.py).
MAX_RATE_KEY = 200
#: Starts per window are stored in a 32-bit column.
MAX_COUNT = 2**31 - 1

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


@dataclass(frozen=True, slots=True)
class RateSpec:
    """``count`` starts (weighted) per sliding window of ``period`` seconds."""

    count: int
    period: float

    def __str__(self) -> str:
        for unit, seconds in sorted(UNITS.items(), key=lambda item: -item[1]):
            if self.period % seconds == 0:
                n = int(self.period // seconds)
                return f"{self.count}/{'' if n == 1 else n}{unit}"
        return f"{self.count}/{self.period}s"


def parse_rate(text: str) -> RateSpec:
    """Parse ``"N/s"``, ``"N/m"``, ``"N/h"``, ``"N/d"`` or ``"N/<k><unit>"`` (``"1000/5m"``); ValueError otherwise."""
    match = _SPEC.match(text)
    if match is None:
        raise ValueError(f"rate limit {text!r} is not of the form N/s, N/m, N/h, N/d or N/5m")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"rate limit {text!r} must allow between 1 and {MAX_COUNT} starts")
    if multiple < 1:
        raise ValueError(f"rate limit {text!r} must have a period of at least 1{unit}")
    return RateSpec(count, multiple * UNITS[unit])


def is_spec(text: str) -> bool:
    """Whether ``text`` is written as a spec (has a ``/``) rather than as a limit's name."""
    return "/" in text


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a shared limit, or None if it can."""
    if not isinstance(name, str) or not _NAME.match(name):
        return f"a limit's name is 1-100 letters, digits or _ . : -, got {name!r}"
    return None


_lock = threading.Lock()
_named: dict[str, RateSpec] = {}


def define(name: str, spec: str) -> RateSpec:
    """Define (or redefine) the shared limit ``name``; every job type with ``rate_limit=name`` shares its window."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    if is_spec(name):
        raise ValueError(f"a limit's name cannot contain '/', got {name!r}")
    parsed = parse_rate(spec)
    with _lock:
        _named[name] = parsed
    return parsed


def named(name: str) -> RateSpec | None:
    """The spec of the shared limit ``name``, or None when this process has not defined it."""
    return _named.get(name)


def forget(name: str) -> None:
    """Remove a shared limit's definition (tests)."""
    with _lock:
        _named.pop(name, None)

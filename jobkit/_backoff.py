"""The only tenacity import for backoff: a job's retry policy -> seconds until the next attempt.

Every policy, named or not, is a tenacity wait strategy, evaluated with a
``RetryCallState`` whose attempt number is the attempt that just failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, TypeAlias

import tenacity
from tenacity.wait import wait_base

BackoffName: TypeAlias = Literal["exponential", "linear", "fixed"]
#: What ``@job(backoff=...)`` takes: a policy name, a tenacity wait strategy, or ``attempt -> seconds``.
BackoffSpec: TypeAlias = "BackoffName | wait_base | Callable[[int], float]"
#: A policy ready to evaluate (what :func:`make_wait` returns); other modules name it by this alias
#: so that tenacity stays imported here only.
Wait: TypeAlias = wait_base

BACKOFF_NAMES: tuple[str, ...] = ("exponential", "linear", "fixed")

#: The exponential policy's base, cap and jitter, in seconds: 1, 2, 4, 8 … up to 1 hour, plus up to 1 s of jitter.
EXPONENTIAL_BASE = 1.0
EXPONENTIAL_CAP = 3600.0
EXPONENTIAL_JITTER = 1.0
LINEAR_STEP = 5.0
FIXED_DELAY = 5.0


class _wait_callable(wait_base):
    """Adapts a plain ``attempt -> seconds`` function to tenacity's wait protocol."""

    def __init__(self, fn: Callable[[int], float]) -> None:
        self.fn = fn

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return float(self.fn(retry_state.attempt_number))


def make_wait(spec: object) -> wait_base:
    """Turn a ``backoff=`` option into a tenacity wait strategy; raises ValueError for unknown specs.

    Takes any object: this is where a user's untyped ``backoff=`` is checked.
    """
    if isinstance(spec, wait_base):
        return spec
    if spec == "exponential":
        return tenacity.wait_exponential(multiplier=EXPONENTIAL_BASE, max=EXPONENTIAL_CAP) + tenacity.wait_random(
            0, EXPONENTIAL_JITTER
        )
    if spec == "linear":
        return tenacity.wait_incrementing(start=LINEAR_STEP, increment=LINEAR_STEP, max=EXPONENTIAL_CAP)
    if spec == "fixed":
        return tenacity.wait_fixed(FIXED_DELAY)
    if callable(spec) and not isinstance(spec, str):
        return _wait_callable(spec)
    raise ValueError(f"unknown backoff {spec!r}; use one of {', '.join(BACKOFF_NAMES)}, a tenacity wait or a callable")


def delay_for(wait: wait_base, attempt: int) -> float:
    """Seconds to wait after ``attempt`` (1-based) failed."""
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    seconds = float(wait(state))
    if math.isnan(seconds):
        # max(0, nan) would quietly say "retry now"; a policy answering NaN is a bug worth naming.
        raise ValueError(f"backoff for attempt {attempt} returned NaN")
    return max(0.0, seconds)

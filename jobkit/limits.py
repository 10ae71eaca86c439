"""Shared rate limits: define them once, use them from job types and from plain code.

Example::

    import jobkit

    jobkit.limits.define("stripe", "25/s")

    @job(name="billing.sync", schema=SyncArgs, rate_limit="stripe")
    class SyncAccount(BaseJob[SyncArgs]): ...

    if jobkit.limits.consume("stripe"):     # a start outside any job, counted in the same window
        stripe.Customer.list()
    jobkit.limits.available("stripe")        # starts left in the window now

A limit's window is kept in the database, so every worker and every process that uses the
same database shares it; see docs/queues-and-limits.md for what counts.
"""

from __future__ import annotations

from jobkit._limits import RateSpec, define, named, parse_rate
from jobkit._queue import JobQueue
from jobkit._store import RateKey

__all__ = ["RateSpec", "available", "consume", "define", "parse_rate"]


def _window(name: str, key: str | None, weight: int) -> RateKey:
    spec = _spec(name)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= spec.count:
        raise ValueError(f"rate limit {name!r}: n must be between 1 and {spec.count}, got {weight!r}")
    return RateKey(name if key is None else f"{name}:{key}", spec.count, spec.period, weight)


def _spec(name: str) -> RateSpec:
    spec = named(name)
    if spec is None:
        raise ValueError(f"rate limit {name!r} is not defined (jobkit.limits.define({name!r}, '25/s'))")
    return spec


def available(name: str, *, key: str | None = None, queue: JobQueue | None = None) -> int:
    """Starts left now in the window of the shared limit ``name`` (``key``: one partition of it).

    ``queue``: the queue whose database holds the window (default: the process-wide queue).
    """
    queue = queue or JobQueue.instance()
    window = _window(name, key, 1)
    used = queue.store.rate_window(window, now=queue.clock.now()).used
    return max(0, window.limit - used)


def consume(name: str, n: int = 1, *, key: str | None = None, queue: JobQueue | None = None) -> bool:
    """Take ``n`` starts from the window of ``name`` if they fit now; whether they did (it never waits).

    The starts count for every job type using the limit, exactly as a job's start would.
    """
    queue = queue or JobQueue.instance()
    return queue.store.consume_rate(_window(name, key, n), now=queue.clock.now())

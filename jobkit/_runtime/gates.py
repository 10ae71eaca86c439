"""What holds a new job back once stored: its concurrency keys and rate-limit window, from its type's options.

One place turns a type's ``concurrency_key`` / ``rate_limit`` options and a row's stored arguments
into what the store writes beside the row, so ``perform_later`` and a cron fire gate a job the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobkit._registry import JobOptions
from jobkit._store import ConcurrencyKey, RateKey


def concurrency_keys(options: JobOptions, args: Sequence[str]) -> list[ConcurrencyKey] | None:
    """Each row's concurrency keys (rows given by their stored arguments), or None for a type without any."""
    if options.concurrency_key is None:
        return None
    return [ConcurrencyKey(*options.keys_of(text)) for text in args]


def rate_keys(options: JobOptions, args: Sequence[str]) -> list[RateKey] | None:
    """Each row's rate-limit window, or None for a type without a rate limit."""
    if options.rate_limit is None:
        return None
    keys = []
    for text in args:
        window = options.rate_of(text)
        assert window is not None  # rate_of answers for every row of a type with a rate_limit
        key, spec, weight = window
        keys.append(RateKey(key, spec.count, spec.period, weight))
    return keys

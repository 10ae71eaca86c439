"""Outcomes: what running one job produced, before it is written."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class Completed:
    """perform returned; ``result`` is its JSON text and ``value`` the object it was dumped from."""

    result: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    """perform raised; ``retryable`` False for permanent errors (Discard, discard_on, bad arguments)."""

    error: dict[str, Any]
    retryable: bool


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The token fired for ``reason``: cancel, pause, shutdown, lease_lost or requeue (prefetched, never started)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Snoozed:
    """The job asked to run again after ``seconds`` without spending an attempt."""

    seconds: float


Outcome: TypeAlias = Completed | Failed | Cancelled | Snoozed


def error_entry(exc: BaseException, attempt: int, at: float, *, message: str | None = None) -> dict[str, Any]:
    """One error-history entry: type, message, traceback, attempt and time."""
    return {
        "attempt": attempt,
        "type": type(exc).__name__,
        "message": message if message is not None else str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "at": at,
    }

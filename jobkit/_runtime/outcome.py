"""Outcomes: what running one job produced, before it is written."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, TypeAlias

from jobkit._vocabulary import CancelReason


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
    """The token fired for ``reason``: cancel, pause, shutdown, lease_lost or requeue (prefetched, never started).

    ``reason`` is a :class:`~jobkit._vocabulary.CancelReason`; text that names none is a
    ValueError here, never quietly read as a plain cancel.
    """

    reason: CancelReason

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", CancelReason.parse(self.reason))


@dataclass(frozen=True, slots=True)
class Crashed:
    """The attempt ended without an outcome of its own (its thread died, or it outlived a shutdown).

    Written as a crash: the job's crash count grows, so a job that keeps wedging or killing
    workers ends ``failed`` after ``max_crashes``, never loops.
    """

    error: dict[str, Any]
    #: False when the job only overran a shutdown: the crash counts, the attempt is given back.
    attempt_spent: bool = True


@dataclass(frozen=True, slots=True)
class Snoozed:
    """The job asked to run again after ``seconds`` without spending an attempt."""

    seconds: float


Outcome: TypeAlias = Completed | Failed | Cancelled | Snoozed | Crashed


#: Longest message and traceback text kept per error entry: a job can raise anything, the row must stay small.
MAX_MESSAGE = 4_000
MAX_TRACEBACK = 32_000


def error_entry(exc: BaseException, attempt: int, at: float, *, message: str | None = None) -> dict[str, Any]:
    """One error-history entry: type (and its import path), message, traceback, attempt and time; never raises.

    Built defensively because the exception is the job's own object: its ``__str__`` may raise,
    return something that is not a string, or be huge.
    """
    return {
        "attempt": attempt,
        "type": _type_name(exc),
        # The importable path as well as the bare name: integrations (Django's TaskError) name the class by it.
        "path": _type_path(exc),
        "message": _clip(message if message is not None else _safe_str(exc), MAX_MESSAGE),
        "traceback": _clip(_safe_traceback(exc), MAX_TRACEBACK),
        "at": at,
    }


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text for a log line (its type name when empty); never raises."""
    try:
        text = str(exc).strip()
    except Exception:
        return type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _type_name(exc: BaseException) -> str:
    try:
        return str(type(exc).__name__)
    except Exception:  # a metaclass with a hostile __name__
        return "<unnamed exception>"


def _type_path(exc: BaseException) -> str:
    try:
        kind = type(exc)
        return f"{kind.__module__}.{kind.__qualname__}"
    except Exception:
        return _type_name(exc)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException as failure:  # the job's __str__ may raise anything, even SystemExit
        return f"<str() of the {_type_name(exc)} failed: {_type_name(failure)}>"
    return text if isinstance(text, str) else repr(text)


def _safe_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException as failure:
        return f"<the traceback could not be formatted: {_type_name(failure)}>"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return _valid_text(text)
    return _valid_text(text[:limit]) + f"... [{len(text) - limit} characters cut]"


def _valid_text(text: str) -> str:
    # A message may hold lone surrogates or NUL, which neither database stores as text.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")

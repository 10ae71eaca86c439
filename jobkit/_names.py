"""Checks of what is stored: names (the same rule on both databases) and 32-bit integers.

Standard library only, so every layer that validates before storing can use it.
"""

from __future__ import annotations

from typing import Any

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

"""A job's error history (the ``errors`` column) as JSON text: read defensively, entries appended.

The history is a JSON list of entries written by jobkit. A row damaged by hand or by an old bug
must never stop the statement that touches it, so a value that is not a JSON list is kept as one
``DamagedHistory`` entry holding the raw text, and the new entry goes after it.
"""

from __future__ import annotations

import json
from typing import Any

DAMAGED = "DamagedHistory"


def damaged_entry(raw: str) -> dict[str, Any]:
    """The entry that stands for a stored history that could not be read, keeping its text."""
    return {
        "type": DAMAGED,
        "message": "the stored error history is not a JSON list; its text is kept under 'raw'",
        "traceback": None,
        "raw": raw,
    }


def parse_history(text: str | None) -> list[Any]:
    """The stored history as a list, never raising: damaged text becomes one :func:`damaged_entry`."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return [damaged_entry(text)]
    return value if isinstance(value, list) else [damaged_entry(text)]


def with_entry(text: str | None, entry: dict[str, Any]) -> str:
    """The stored history with ``entry`` appended, as JSON text."""
    history = parse_history(text)
    history.append(entry)
    try:
        return json.dumps(history)
    except (TypeError, ValueError, RecursionError):
        # Parsed but not writable again (nesting beyond the encoder's depth): keep the text instead.
        return json.dumps([damaged_entry(text or ""), entry])


def discard_entry(now: float, reason: str = "discarded by an operator while it ran") -> dict[str, Any]:
    """The entry recorded when a discard request ends a running job."""
    return {"type": "Discard", "message": reason, "traceback": None, "at": now}

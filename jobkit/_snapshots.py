"""Stored rows as the snapshots handles and admin calls show: every value decoded, never raising.

A row may be damaged (JSON that is not JSON, a time out of range): each such value is shown
for what it is and named in ``JobInfo.damaged``, so one bad row never breaks a listing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from jobkit._clock import to_datetime
from jobkit._handle import JobInfo
from jobkit._payload import loads
from jobkit._store import JobRecord

#: Key under which a stored JSON value that cannot be read is shown, with its raw text.
UNREADABLE = "__unreadable__"

_EPOCH_MIN = datetime.min.replace(tzinfo=UTC)
_EPOCH_MAX = datetime.max.replace(tzinfo=UTC)


def _safe_loads(text: Any, column: str, damaged: list[str]) -> Any:
    # A malformed row must stay readable by admin tools: show the raw text rather than raise.
    if text is None:
        return None
    try:
        return loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        damaged.append(f"{column}: not readable as JSON ({type(exc).__name__})")
        return {UNREADABLE: text if isinstance(text, str) else repr(text)}


def _safe_object(text: Any, column: str, damaged: list[str]) -> dict[str, Any] | None:
    """A JSON object column (args, progress, checkpoint): anything else is shown under UNREADABLE."""
    value = _safe_loads(text, column, damaged)
    if value is None or isinstance(value, dict):
        return value
    damaged.append(f"{column}: a JSON {type(value).__name__}, not an object")
    return {UNREADABLE: text}


def _safe_errors(text: Any, damaged: list[str]) -> list[dict[str, Any]]:
    value = _safe_loads(text, "errors", damaged)
    if value is None:
        return []
    if not isinstance(value, list):
        if UNREADABLE not in (value if isinstance(value, dict) else {}):
            damaged.append(f"errors: a JSON {type(value).__name__}, not a list")
        return [{"type": "DamagedHistory", "message": "the stored error history is not a JSON list", "raw": text}]
    entries: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, dict):
            entries.append(item)
        else:
            damaged.append("errors: an entry that is not a JSON object")
            entries.append(
                {"type": "DamagedEntry", "message": "a stored error entry is not a JSON object", "raw": item}
            )
    return entries


def _safe_time(value: Any, column: str, damaged: list[str], *, required: bool) -> datetime | None:
    """Epoch seconds as an aware datetime; damage is noted and shown clamped (required) or as None."""
    if value is None:
        if required:
            damaged.append(f"{column}: missing")
            return _EPOCH_MIN
        return None
    try:
        return to_datetime(float(value))
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    damaged.append(f"{column}: out of range ({value!r})")
    if not required:
        return None
    return _EPOCH_MAX if number > 0 else _EPOCH_MIN  # NaN and the far past alike show as the earliest time


def info_of(record: JobRecord) -> JobInfo:
    """A row as a JobInfo, never raising: damaged values are shown as such and listed in ``damaged``."""
    damaged: list[str] = []
    run_at = _safe_time(record.run_at, "run_at", damaged, required=True)
    created = _safe_time(record.created_at, "created_at", damaged, required=True)
    assert run_at is not None and created is not None
    return JobInfo(
        id=record.id,
        name=record.name,
        queue=record.queue,
        priority=record.priority,
        status=record.status,
        args=_safe_object(record.args, "args", damaged) or {},
        run_at=run_at,
        created_at=created,
        attempt=record.attempt,
        max_retries=record.max_retries,
        started_at=_safe_time(record.started_at, "started_at", damaged, required=False),
        finished_at=_safe_time(record.finished_at, "finished_at", damaged, required=False),
        result=_safe_loads(record.result, "result", damaged),
        errors=_safe_errors(record.errors, damaged),
        progress=_safe_object(record.progress, "progress", damaged),
        checkpoint=_safe_object(record.checkpoint, "checkpoint", damaged),
        cancel_requested=record.cancel_requested,
        crashes=record.crashes,
        worker_id=record.worker_id,
        damaged=damaged,
    )


def older_than_cutoff(value: timedelta | float | datetime | None, now: float) -> float | None:
    """The epoch cutoff an ``older_than=`` argument names: a datetime as is, an age (seconds or timedelta) before ``now``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return now - seconds

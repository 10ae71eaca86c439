"""Stored values as the pages show them: pretty JSON with secrets masked, ages, progress, charts' bars.

Nothing here makes HTML: the templates escape every value (autoescape), so a job's arguments,
names, stages, messages and tracebacks are shown as the text they are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobkit._handle import JobInfo
from jobkit._payload import MASK, redact
from jobkit._registry import lookup
from jobkit._store import MinuteCount

#: What a missing time or duration is shown as (an en dash).
NONE = "\u2013"


def pretty(value: Any) -> str:
    """Indented JSON, keys in stored order, non-ASCII kept (what the page shows in a <pre>)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def masked_args(info: JobInfo, redact_names: Collection[str]) -> Any:
    """The job's arguments with its schema's secret fields and every field named in ``redact_names`` masked."""
    job_type = lookup(info.name)
    args: Any = info.args
    if job_type is not None:
        args = redact(args, job_type.options.schema)
    return _mask_names(args, frozenset(redact_names)) if redact_names else args


def _mask_names(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: MASK if k in names else _mask_names(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_names(v, names) for v in value]
    return value


def age(seconds: float | None) -> str:
    """A duration as people read it: 4s, 3m 20s, 2h 5m, 3d 4h."""
    if seconds is None or not math.isfinite(seconds):
        return NONE
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def when(value: datetime | float | None) -> str:
    """A time in UTC, to the second."""
    if value is None:
        return NONE
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Progress:
    """A job's last reported progress, read defensively (a job reports what it likes)."""

    percent: float | None
    stage: str | None
    message: str | None

    @classmethod
    def of(cls, progress: dict[str, Any] | None) -> Progress:
        """From the stored progress object (None: nothing reported)."""
        if not progress:
            return cls(None, None, None)
        percent = progress.get("percent")
        number = float(percent) if isinstance(percent, int | float) and math.isfinite(percent) else None
        stage, message = progress.get("stage"), progress.get("message")
        return cls(
            None if number is None else min(100.0, max(0.0, number)),
            None if stage is None else str(stage),
            None if message is None else str(message),
        )


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a throughput chart: its label, counts and heights (0 to 100) in the SVG's units."""

    label: str
    completed: int
    failed: int
    completed_height: float
    failed_height: float


def bars(counts: Sequence[MinuteCount], *, start: float, step: int, slots: int, queue: str | None = None) -> list[Bar]:
    """``slots`` bars of ``step`` seconds from ``start``, summing the minutes (of one queue, or all) in each."""
    totals = [[0, 0] for _ in range(slots)]
    for count in counts:
        if queue is not None and count.queue != queue:
            continue
        index = int((count.minute - start) // step)
        if 0 <= index < slots:
            totals[index][0] += count.completed
            totals[index][1] += count.failed
    peak = max([c + f for c, f in totals] + [1])
    fmt = "%H:%M"
    return [
        Bar(
            datetime.fromtimestamp(start + i * step, UTC).strftime(fmt),
            c,
            f,
            round(100 * c / peak, 2),
            round(100 * f / peak, 2),
        )
        for i, (c, f) in enumerate(totals)
    ]


def checkpoint_view(checkpoint: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored checkpoint as its stage, time, size in bytes and pretty content."""
    if checkpoint is None:
        return None
    text = pretty(checkpoint.get("data"))
    at = checkpoint.get("at")
    return {
        "stage": str(checkpoint.get("stage", "")),
        "at": when(float(at)) if isinstance(at, int | float) else NONE,
        "size": len(json.dumps(checkpoint.get("data"), ensure_ascii=False, default=repr).encode()),
        "content": text,
    }


def attempts(errors: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The error history, oldest first, each entry's fields as text."""
    shown = []
    for entry in errors:
        at = entry.get("at")
        shown.append(
            {
                "attempt": str(entry.get("attempt", "?")),
                "type": str(entry.get("type", "")),
                "message": str(entry.get("message", "")),
                "traceback": str(entry.get("traceback") or entry.get("raw") or ""),
                "at": when(float(at)) if isinstance(at, int | float) else NONE,
            }
        )
    return shown

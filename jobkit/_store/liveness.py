"""Judging another worker's heartbeat by watching it change, with this process's own clock.

On SQLite every process stamps its heartbeat with its own wall clock (there is no server), so
comparing a heartbeat with the rescuer's clock would let a process ten minutes fast rescue every
healthy worker's jobs, and leave a dead fast-clock worker unrescued for ten minutes. The rescuer
instead remembers, per worker, the last heartbeat value it saw and its own monotonic time when
that value last changed: a worker is lost when its value has not changed for ``rescue_after`` of
the rescuer's time. Skew, steps and drift of the worker's clock cannot matter, only that its
heartbeat keeps changing.

Each pass bounds when a worker last beat: after the previous pass that still saw the old value,
and no later than the pass that first saw the new one. A worker is lost once it may have been
silent for ``rescue_after`` (the early bound) and surely was for ``rescue_after - margin`` (the
late bound). With ``margin`` at most one heartbeat interval and at most one rescue interval, a
live worker (silent for at most one heartbeat) is never taken, and a dead worker whose last beat
was seen change is rescued within ``rescue_after`` + one rescue interval of that beat.

A rescuer that has just started knows no history: it takes a worker to be alive for
``rescue_after - margin`` after first seeing it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class _Seen:
    value: float
    #: Own time of the pass that first saw ``value`` (the beat happened no later).
    changed_by: float
    #: Own time of the last pass that saw the value before it (the beat happened after); None: unknown.
    changed_after: float | None
    #: Own time of the last pass that saw ``value``.
    seen_at: float


class HeartbeatObserver:
    """Per worker id: the last heartbeat value seen and the bounds on when it last changed."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def stale(self, rows: Iterable[tuple[str, float]], rescue_after: float, margin: float = 0.0) -> dict[str, float]:
        """Record the heartbeats just read as (worker id, heartbeat_at); returns the stale ones.

        Stale: the value may have stood still for ``rescue_after`` and surely has for
        ``rescue_after - margin`` of this process's time. Workers no longer listed are forgotten.
        """
        now = self._monotonic()
        stale: dict[str, float] = {}
        with self._lock:
            seen: dict[str, _Seen] = {}
            for worker_id, beat in rows:
                value = float(beat)
                last = self._seen.get(worker_id)
                same = last is not None and (last.value == value or (last.value != last.value and value != value))
                if last is not None and same:
                    entry = _Seen(value, last.changed_by, last.changed_after, now)
                else:
                    entry = _Seen(value, now, None if last is None else last.seen_at, now)
                seen[worker_id] = entry
                surely = now - entry.changed_by >= rescue_after - margin
                maybe = entry.changed_after is None or now - entry.changed_after >= rescue_after
                if surely and maybe:
                    stale[worker_id] = value
            self._seen = seen
        return stale

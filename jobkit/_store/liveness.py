"""Judging another worker's heartbeat by watching it change, with this process's own clock.

On SQLite every process stamps its heartbeat with its own wall clock (there is no server), so
comparing a heartbeat with the rescuer's clock would let a process ten minutes fast rescue every
healthy worker's jobs, and leave a dead fast-clock worker unrescued for ten minutes. The rescuer
instead remembers, per worker, the last heartbeat value it saw and its own monotonic time when
that value last changed: a worker is lost when its value has not changed for ``rescue_after`` of
the rescuer's time. Skew, steps and drift of the worker's clock cannot matter, only that its
heartbeat keeps changing.

A rescuer that has just started knows no history: it takes a worker to be alive for
``rescue_after`` after first seeing it. A dead worker is therefore rescued within
``rescue_after`` + one rescue interval of its death as long as some rescuer was running, and
within ``rescue_after`` + one interval of a rescuer's start otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable


class HeartbeatObserver:
    """Per worker id: the last heartbeat value seen and when (by ``monotonic``) it last changed."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def stale(self, rows: Iterable[tuple[str, float]], rescue_after: float) -> dict[str, float]:
        """Record the heartbeats just read as (worker id, heartbeat_at); returns the stale ones.

        Stale: the value has not changed for ``rescue_after`` of this process's time. Workers
        no longer listed are forgotten.
        """
        now = self._monotonic()
        stale: dict[str, float] = {}
        with self._lock:
            seen: dict[str, tuple[float, float]] = {}
            for worker_id, beat in rows:
                value = float(beat)
                last = self._seen.get(worker_id)
                same = last is not None and (last[0] == value or (last[0] != last[0] and value != value))  # NaN too
                changed_at = last[1] if same and last is not None else now
                seen[worker_id] = (value, changed_at)
                if now - changed_at >= rescue_after:
                    stale[worker_id] = value
            self._seen = seen
        return stale

"""The tally: finished jobs counted per minute and queue in memory, added to the store every few seconds.

The dashboard's throughput charts read these counts instead of counting the jobs table. They
are statistics, not state: the completer adds to the tally after each batch it wrote and hands
the sums to the store at most every :data:`TALLY_EVERY` seconds (and when it stops), so the hot
path pays one dict update per job and no extra transaction per batch. A worker that dies loses
at most those seconds of counts; no job is affected.
"""

from __future__ import annotations

import logging
import threading
import time

from jobkit._store import MinuteCount, Store

log = logging.getLogger("jobkit.tally")

#: Seconds between two writes of the counts.
TALLY_EVERY = 2.0


class Tally:
    """Counts of completed and failed jobs per (minute, queue), waiting to be written."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._counts: dict[tuple[int, str], list[int]] = {}
        self._lock = threading.Lock()
        self._next = time.monotonic() + TALLY_EVERY

    def __bool__(self) -> bool:
        return bool(self._counts)

    def add(self, queue: str, *, completed: int, failed: int, now: float) -> None:
        """Count jobs of ``queue`` that finished at ``now``."""
        key = (int(now // 60 * 60), queue)
        with self._lock:
            counts = self._counts.setdefault(key, [0, 0])
            counts[0] += completed
            counts[1] += failed

    def flush(self, *, force: bool = False) -> int:
        """Write the counts when they are due (or ``force``); returns how many rows were written."""
        if not force and time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + TALLY_EVERY
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return 0
        rows = [MinuteCount(minute, queue, c, f) for (minute, queue), (c, f) in sorted(counts.items())]
        try:
            self.store.add_minute_counts(rows)
        except Exception as exc:
            # Statistics only: a database that refuses them must never stop outcomes being written.
            log.warning("could not store %d per-minute counts (%s); they are dropped", len(rows), exc)
        return len(rows)

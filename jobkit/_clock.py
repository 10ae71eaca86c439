"""Clock protocol: time is an argument, so tests move a fake clock instead of sleeping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where the store and the services read the current time (epoch seconds)."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class FakeClock:
    """A clock that only moves when told to; for tests of scheduled jobs.

    Example::

        clock = FakeClock()
        clock.advance(timedelta(minutes=5))
    """

    def __init__(self, start: float | datetime | None = None) -> None:
        if start is None:
            self._now = time.time()
        elif isinstance(start, datetime):
            self._now = start.timestamp()
        else:
            self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, as last set."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> None:
        """Move the clock forward."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        with self._lock:
            self._now += seconds

    def set(self, when: datetime) -> None:
        """Jump to an aware datetime."""
        with self._lock:
            self._now = when.timestamp()


def to_datetime(epoch: float | None) -> datetime | None:
    """Epoch seconds to an aware UTC datetime (None stays None)."""
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)

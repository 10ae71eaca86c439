"""The only APScheduler import: interval timers for the maintenance services."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("jobkit.timers")
# APScheduler logs every tick at INFO; jobkit logs what matters itself.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


class Timers:
    """Runs ``fn`` every ``seconds`` in a background thread; one missed run is coalesced, never stacked."""

    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})

    def every(self, seconds: float, fn: Callable[[], Any], name: str, *, first_in: float | None = None) -> None:
        """Schedule ``fn``; it first runs after ``first_in`` seconds (default: one interval)."""
        start = datetime.now(UTC) + timedelta(seconds=seconds if first_in is None else first_in)
        self._scheduler.add_job(
            _guard(fn, name),
            IntervalTrigger(seconds=seconds, start_date=start, timezone=UTC),
            id=name,
            name=name,
            misfire_grace_time=None,
        )

    def start(self) -> None:
        """Start the timer thread."""
        self._scheduler.start()

    def stop(self) -> None:
        """Stop the timers, waiting for a running pass to finish."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)


def _guard(fn: Callable[[], Any], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception as exc:
            # A maintenance pass that fails (database away) simply runs again next tick.
            log.warning("%s pass failed: %s", name, exc)

    return run

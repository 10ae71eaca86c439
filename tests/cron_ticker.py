"""A scheduler in a process of its own, ticking a fake clock through simulated time.

``python -m tests.cron_ticker URL START STEP COUNT`` sets the clock to START + i * STEP for
i in 1..COUNT and runs one scheduler tick at each, then prints how many fires it decided.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from jobkit import FakeClock, JobQueue
from tests import cron_jobs  # noqa: F401  (registers the declared schedule)


def tick_through(queue: JobQueue, clock: FakeClock, start: float, step: float, count: int) -> int:
    """Tick once at each step; returns the fires this scheduler recorded first."""
    fired = 0
    for i in range(1, count + 1):
        clock.set(datetime.fromtimestamp(start + i * step, UTC))
        fired += len(queue.scheduler.run_once())
    return fired


def main(argv: list[str]) -> int:
    url, start, step, count = argv[0], float(argv[1]), float(argv[2]), int(argv[3])
    clock = FakeClock(start)
    queue = JobQueue(database_url=url, clock=clock)
    try:
        print(tick_through(queue, clock, start, step, count), flush=True)
    finally:
        queue.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

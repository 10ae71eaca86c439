"""The workers' per-minute counts of finished jobs (the dashboard's charts), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

from jobkit import JobQueue
from jobkit._runtime.tally import TALLY_EVERY
from tests.dashboard_jobs import Flaky, Mail


def totals(queue: JobQueue) -> dict[str, tuple[int, int]]:
    """Completed and failed counts per queue over the last hour, as stored."""
    found: dict[str, tuple[int, int]] = {}
    for count in queue.store.minute_counts(since=time.time() - 3600):
        done, failed = found.get(count.queue, (0, 0))
        found[count.queue] = (done + count.completed, failed + count.failed)
    return found


def test_run_once_counts_completed_and_failed_per_queue(queue: JobQueue, tmp_path: Path) -> None:
    """Jobs run by run_once are counted in their minute and queue as soon as the pass ends."""
    flag = tmp_path / "flag"
    flag.write_text("up")
    Mail.perform_all_later([{"to": "a@b.c"}, {"to": "b@b.c"}])
    Flaky.perform_later(flag=str(flag))
    queue.drain()
    assert totals(queue) == {"mailers": (2, 0), "default": (0, 1)}


def test_a_running_worker_writes_its_counts_within_seconds(queue: JobQueue) -> None:
    """A started worker's completer writes the counts every few seconds, also when it goes idle."""
    queue.start()
    try:
        handles = Mail.perform_all_later([{"to": f"u{i}@b.c"} for i in range(5)])
        for handle in handles:
            handle.result(timeout=15)
        deadline = time.monotonic() + TALLY_EVERY * 3 + 2
        while totals(queue).get("mailers") != (5, 0):
            assert time.monotonic() < deadline, f"counts not written: {totals(queue)}"
            time.sleep(0.1)
    finally:
        queue.stop(grace=5)

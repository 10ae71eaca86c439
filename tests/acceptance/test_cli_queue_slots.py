"""`jobkit worker --queue NAME=SLOTS` as a real process, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal

from jobkit import JobQueue
from tests.acceptance.test_cli_worker import start_worker
from tests.jobs import AddOne, Sleepy


def test_a_worker_process_gives_each_queue_its_own_slots(db_url: str, producer: JobQueue) -> None:
    """slow=1, fast=2: long jobs on "slow" hold its one slot; every "fast" job runs meanwhile."""
    slow = [Sleepy.set(queue="slow").perform_later(seconds=20) for _ in range(3)]
    fast = [AddOne.set(queue="fast").perform_later(n=i) for i in range(20)]
    elsewhere = AddOne.set(queue="other").perform_later(n=0)
    worker = start_worker(db_url, "--queue", "slow=1", "--queue", "fast=2", "--shutdown-grace", "0.5")
    try:
        assert [h.result(timeout=30) for h in fast] == list(range(1, 21))
        states = [h.status() for h in slow]
        assert (states.count("running"), states.count("pending")) == (1, 2)
        assert elsewhere.why() == "no worker registered for queue 'other'"
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert "slow=1, fast=2" in output

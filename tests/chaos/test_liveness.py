"""A job that runs longer than rescue_after on a live worker is never rescued."""

from __future__ import annotations

import pytest

from jobkit import JobQueue
from tests.chaos.cluster import HEARTBEAT, RESCUE_AFTER, Cluster
from tests.chaos.jobs import Work
from tests.chaos.ledger import check, load

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_long_job_on_live_worker_is_not_rescued(queue: JobQueue, cluster: Cluster) -> None:
    """Two rescuers watch a job run for twice rescue_after; it runs once and completes untouched."""
    workers = [cluster.start(wait=False) for _ in range(2)]
    for worker in workers:
        cluster.wait_registered(worker)
    handle = Work.perform_later(seconds=RESCUE_AFTER * 2)
    assert handle.result(timeout=RESCUE_AFTER * 2 + 15)["token"]
    cluster.stop_all()

    check(
        cluster.ledger,
        queue.jobs(),
        expected={handle.id: "completed"},
        crashed={},
        rescue_after=RESCUE_AFTER,
        heartbeat=HEARTBEAT,
    )
    info = handle.refresh()
    assert (info.attempt, info.crashes, info.errors) == (1, 0, [])
    assert len(load(cluster.ledger)[handle.id]) == 1

"""SIGTERM during long jobs: a clean drain, unfinished jobs given back unspent, exit 0 in time."""

from __future__ import annotations

import pytest

from jobkit import JobQueue
from tests.chaos.cluster import HEARTBEAT, RESCUE_AFTER, Cluster, wait_until
from tests.chaos.jobs import Work
from tests.chaos.ledger import check, load

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

GRACE = 2.0


def test_sigterm_finishes_short_jobs_and_releases_long_ones(queue: JobQueue, cluster: Cluster) -> None:
    """Jobs done within the grace complete; the rest go back to pending (a stubborn one as a crash); exit 0 in grace + 2 s."""
    worker = cluster.start(shutdown_grace=GRACE, concurrency=4)
    short_a, short_b, polite, stubborn, waiting_a, waiting_b = Work.perform_all_later(
        [
            {"seconds": 1.0},
            {"seconds": 1.0},
            {"seconds": 60.0},
            {"seconds": 60.0, "cooperative": False},
            {"seconds": 0.01},
            {"seconds": 0.01},
        ]
    )
    running = [short_a.id, short_b.id, polite.id, stubborn.id]
    wait_until(lambda: all(load(cluster.ledger).get(i) for i in running), 15, "four jobs to start")

    code, took = cluster.terminate(worker, timeout=GRACE + 15)
    print(f"SIGTERM to exit: {took:.2f}s (grace {GRACE}s)")
    assert code == 0, worker.output()
    assert took <= GRACE + 2, f"exit took {took:.2f}s"

    released = [polite.id, stubborn.id]
    never_started = [waiting_a.id, waiting_b.id]
    check(
        cluster.ledger,
        queue.jobs(),
        expected={short_a.id: "completed", short_b.id: "completed"}
        | dict.fromkeys(released + never_started, "pending"),
        crashed={},
        rescue_after=RESCUE_AFTER,
        heartbeat=HEARTBEAT,
    )
    for job_id in [polite.id, *never_started]:
        info = queue.job_info(job_id)
        assert info is not None and (info.attempt, info.worker_id, info.errors) == (0, None, []), info
    # The stubborn job ignored its token past the grace: handed back as a crash, its attempt kept, so a job
    # that wedges every worker it meets ends failed after max_crashes instead of going round for ever.
    info = queue.job_info(stubborn.id)
    assert info is not None and (info.attempt, info.worker_id, info.crashes) == (0, None, 1), info
    assert [e["type"] for e in info.errors] == ["WorkerLost"] and info.errors[0]["reason"] == "shutdown"
    runs = load(cluster.ledger)
    assert runs[polite.id][0].cancelled == "shutdown"
    assert not any(runs.get(i) for i in never_started)

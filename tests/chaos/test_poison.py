"""A poison pill (a job that kills every worker that runs it) is failed after max_crashes; the rest keep flowing."""

from __future__ import annotations

import statistics
import time

import pytest

from jobkit import JobQueue
from tests.chaos.cluster import HEARTBEAT, RESCUE_AFTER, Cluster, wait_until
from tests.chaos.jobs import Poison, Work
from tests.chaos.ledger import check, load

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

MAX_CRASHES = 3


def test_poison_pill_fails_after_max_crashes_while_other_jobs_flow(queue: JobQueue, cluster: Cluster) -> None:
    """The pill is claimed exactly max_crashes times, then failed; jobs enqueued meanwhile all complete promptly."""
    # One slot per worker and no prefetch: a crash takes only the pill with it, never an innocent job beside it.
    # Three workers, so that while the pill kills one and its replacement starts up, two are still there: with
    # two, the pill's next victim could be the only live worker, and innocent jobs waited for a process start.
    for worker in [cluster.start(wait=False, concurrency=1, max_crashes=MAX_CRASHES, prefetch=False) for _ in range(3)]:
        cluster.wait_registered(worker)
    pill = Poison.perform_later()
    others: list[int] = []
    replaced: set[int] = set()
    deadline = time.monotonic() + 60
    while pill.status() != "failed":
        assert time.monotonic() < deadline, f"the pill is still {pill.status()} after 60s"
        others += [h.id for h in Work.perform_all_later([{"seconds": 0.02}] * 2)]
        for worker in cluster.workers:
            if not worker.alive() and worker.pid not in replaced:
                replaced.add(worker.pid)
                cluster.start(wait=False, concurrency=1, max_crashes=MAX_CRASHES, prefetch=False)
        time.sleep(0.2)
    wait_until(lambda: all(queue.job_status(i) == "completed" for i in others), 20, "the other jobs to complete")
    cluster.stop_all()

    runs = load(cluster.ledger)
    pill_runs = runs[pill.id]
    crashed = {run.worker: run.start for run in pill_runs}
    verdict = check(
        cluster.ledger,
        queue.jobs(limit=10_000),
        expected={pill.id: "failed"} | dict.fromkeys(others, "completed"),
        crashed=crashed,
        rescue_after=RESCUE_AFTER,
        heartbeat=HEARTBEAT,
    )
    info = pill.refresh()
    assert len(pill_runs) == MAX_CRASHES == info.crashes
    assert [e["type"] for e in info.errors] == ["WorkerLost"] * MAX_CRASHES
    assert "poison pill" in info.errors[-1]["message"]

    first, last = pill_runs[0].start, info.finished_at.timestamp() if info.finished_at else 0.0
    latencies = []
    for job_id in others:
        other = queue.job_info(job_id)
        assert other is not None and other.finished_at is not None
        latencies.append((other.finished_at - other.created_at).total_seconds())
    during = [i for i in others if first <= queue.job_info(i).created_at.timestamp() <= last]  # type: ignore[union-attr]
    print(f"{verdict.summary()} others={len(others)} median latency={statistics.median(latencies):.3f}s")
    assert len(during) > 20 and statistics.median(latencies) < 1.0
    assert max(latencies) < RESCUE_AFTER, "another job waited as long as a rescue: the pill held it up"

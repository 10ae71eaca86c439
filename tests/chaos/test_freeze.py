"""A worker frozen (SIGSTOP) past its lease, then thawed (SIGCONT): its jobs ran elsewhere, its late writes are refused."""

from __future__ import annotations

import re
import time

import pytest

from jobkit import JobQueue
from tests.chaos.cluster import HEARTBEAT, RESCUE_AFTER, Cluster, wait_until
from tests.chaos.jobs import Work
from tests.chaos.ledger import check, load

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_frozen_worker_cannot_write_after_its_jobs_were_rescued(queue: JobQueue, cluster: Cluster) -> None:
    """After SIGCONT the stale attempts finish, but none of their results or state changes is stored."""
    frozen = cluster.start()
    handles = Work.perform_all_later([{"seconds": 2.0, "cooperative": False} for _ in range(2)])
    ids = [h.id for h in handles]
    wait_until(lambda: all(load(cluster.ledger).get(i) for i in ids), 15, "both jobs to start on the first worker")
    cluster.freeze(frozen)
    rescuer = cluster.start()

    wait_until(lambda: all(h.status() == "completed" for h in handles), 20, "the rescuer to run both jobs")
    stored = {h.id: h.refresh().result for h in handles}
    cluster.thaw(frozen)

    def refused() -> bool:
        found = re.findall(r"job (\d+): lease .* no longer held; the \w+ write was refused", frozen.output())
        return set(ids) <= {int(i) for i in found}

    wait_until(refused, 15, "the thawed worker to try (and fail) to write both outcomes")
    wait_until(lambda: all(r.end for i in ids for r in load(cluster.ledger)[i]), 10, "the stale attempts to end")
    assert frozen.alive() and rescuer.alive()
    cluster.stop_all()

    verdict = check(
        cluster.ledger,
        queue.jobs(),
        expected={i: "completed" for i in ids},
        crashed=cluster.rescue_clock(),
        rescue_after=RESCUE_AFTER,
        heartbeat=HEARTBEAT,
    )
    print(verdict.summary())
    runs = load(cluster.ledger)
    for handle in handles:
        stale, fresh = runs[handle.id]
        assert stale.pid == frozen.pid and fresh.pid == rescuer.pid
        info = handle.refresh()
        assert info.result == stored[handle.id] and info.result["token"] == fresh.token != stale.token
        assert info.crashes == 1 and [e["type"] for e in info.errors] == ["WorkerLost"]


def test_thawed_worker_cancels_its_rescued_job_at_once(queue: JobQueue, cluster: Cluster) -> None:
    """On SIGCONT the worker sees by lease that its job was rescued and cancels that attempt within a heartbeat."""
    frozen = cluster.start()
    handle = Work.perform_later(seconds=120)
    wait_until(lambda: load(cluster.ledger).get(handle.id), 15, "the job to start")
    cluster.freeze(frozen)
    cluster.start()
    wait_until(lambda: len(load(cluster.ledger).get(handle.id, [])) == 2, 20, "the rescuer to run the job again")

    thawed = time.time()
    cluster.thaw(frozen)
    stale = wait_until(lambda: load(cluster.ledger)[handle.id][0].cancelled, 10, "the stale attempt to be cancelled")
    reaction = load(cluster.ledger)[handle.id][0].end or 0.0
    print(f"stale attempt cancelled {reaction - thawed:.2f}s after SIGCONT")
    assert stale == "lease_lost"
    assert reaction - thawed < HEARTBEAT + 1.0
    assert handle.status() == "running"
    handle.cancel()
    wait_until(lambda: handle.status() == "cancelled", 10, "the fresh attempt to honour the cancel")
    cluster.stop_all()

    check(
        cluster.ledger,
        queue.jobs(),
        expected={handle.id: "cancelled"},
        crashed=cluster.rescue_clock(),
        rescue_after=RESCUE_AFTER,
        heartbeat=HEARTBEAT,
    )

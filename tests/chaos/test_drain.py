"""The chaos drain: worker processes SIGKILLed again and again while 2,000 jobs drain."""

from __future__ import annotations

import random
import time

import pytest

from jobkit import JobQueue
from tests.chaos.cluster import HEARTBEAT, RESCUE_AFTER, Cluster, wait_until
from tests.chaos.jobs import Work
from tests.chaos.ledger import check

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

JOBS = 2000
KILLS = 5


def unfinished(queue: JobQueue) -> int:
    """Jobs still pending or running."""
    by_status = queue.stats()["by_status"]
    return int(by_status.get("pending", 0) + by_status.get("running", 0))


def test_chaos_drain_survives_repeated_sigkill(queue: JobQueue, cluster: Cluster) -> None:
    """SIGKILLs during a drain lose no job, complete none twice and rerun only the killed workers' jobs."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    handles = Work.perform_all_later([{"seconds": rng.uniform(0.005, 0.06), "progress": True} for _ in range(JOBS)])
    started = time.monotonic()
    for worker in [cluster.start(wait=False) for _ in range(3)]:
        cluster.wait_registered(worker)

    kills = 0
    while kills < KILLS and unfinished(queue) > JOBS // 10:
        time.sleep(rng.uniform(0.8, 1.4))
        victim = rng.choice(cluster.alive())
        cluster.kill(victim)
        cluster.start(wait=False)
        kills += 1
    wait_until(lambda: unfinished(queue) == 0, 90, "the drain to finish")
    elapsed = time.monotonic() - started
    live = cluster.alive()
    cluster.stop_all()

    verdict = check(
        cluster.ledger,
        queue.jobs(limit=JOBS * 2),
        expected={h.id: "completed" for h in handles},
        crashed=cluster.rescue_clock(),
        rescue_after=RESCUE_AFTER,
        heartbeat=HEARTBEAT,
    )
    print(f"seed={seed} kills={kills} drain={elapsed:.1f}s {verdict.summary()}")
    assert kills >= 3, f"the drain finished before enough kills (seed {seed})"
    assert verdict.rescues, "no job was running in a killed worker: the chaos tested nothing"
    assert len(live) == 3
    logs = cluster.logs()
    print(f"'database is locked' retries logged: {logs.count('database is locked')}")
    for symptom in ("Traceback", "refused", "could not write", "cannot claim", "heartbeat failed"):
        assert symptom not in logs, f"{symptom!r} in the workers' logs:\n{logs[-5000:]}"

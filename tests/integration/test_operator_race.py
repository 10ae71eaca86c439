"""The operator's word is final: a cancel or pause sent while a job runs survives its retry or snooze."""

from __future__ import annotations

import random
import time

import pytest

from jobkit import JobCancelled, JobQueue
from tests.wedge_jobs import FailsSlowly, SnoozesSlowly

ROUNDS = 8


def wait_running(handle: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while handle.status() != "running":  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(0.005)


@pytest.mark.parametrize("job_class", [FailsSlowly, SnoozesSlowly], ids=["retry", "snooze"])
def test_cancel_racing_a_requeue_ends_the_job_cancelled(queue: JobQueue, job_class: type) -> None:
    """A cancel asked for at a random moment of a job that keeps retrying or snoozing always ends it cancelled."""
    queue.start()
    rng = random.Random(9)
    for _ in range(ROUNDS):
        handle = job_class.perform_later(seconds=0.03)
        wait_running(handle)
        time.sleep(rng.uniform(0, 0.04))  # land the request anywhere in the attempt, or right at its end
        assert handle.cancel() in ("cancelling", "cancelled")
        with pytest.raises(JobCancelled):
            handle.result(timeout=10)


@pytest.mark.parametrize("job_class", [FailsSlowly, SnoozesSlowly], ids=["retry", "snooze"])
def test_pause_racing_a_requeue_ends_the_job_paused(queue: JobQueue, job_class: type) -> None:
    """A pause asked for while the job retries or snoozes parks it as paused; resume lets it run again."""
    queue.start()
    rng = random.Random(11)
    for _ in range(ROUNDS):
        handle = job_class.perform_later(seconds=0.03)
        wait_running(handle)
        time.sleep(rng.uniform(0, 0.04))
        assert handle.pause() in ("pausing", "paused")
        deadline = time.monotonic() + 10
        while handle.status() != "paused":
            assert time.monotonic() < deadline, f"still {handle.status()}: the pause was lost"
            time.sleep(0.01)
        time.sleep(0.3)  # a lost pause would show here as the job running again
        assert handle.status() == "paused"
        handle.cancel()

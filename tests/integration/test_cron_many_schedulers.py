"""Four schedulers (two threads, two processes) tick one week of fake time: one job per fire time."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobkit import FakeClock, JobQueue
from jobkit._cron import parse_cron
from tests.conftest import FAST
from tests.cron_jobs import Report
from tests.cron_ticker import tick_through

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 10, 19, 0, 0, 10, tzinfo=UTC)  # a Monday; the week holds Berlin's fall-back night
STEP = 15 * 60.0
STEPS = 7 * 24 * 4
SCHEDULES = {
    "quarterly": ("*/15 * * * *", "UTC"),
    "hourly-berlin": ("@hourly", "Europe/Berlin"),
    "nightly-berlin": ("30 2 * * *", "Europe/Berlin"),
    "weekdays-ny": ("0 9 * * 1-5", "America/New_York"),
}


@pytest.mark.slow
def test_four_schedulers_make_one_job_per_fire_time(db_url: str) -> None:
    """Every fire time of a simulated week becomes exactly one job, whichever scheduler got there first."""
    clock = FakeClock(START)
    setup = JobQueue(database_url=db_url, clock=clock, **FAST)
    try:
        for key, (cron, zone) in SCHEDULES.items():
            setup.schedule(Report, cron=cron, timezone=zone, key=key, args={"scope": key})
        setup.scheduler.sync()  # the declared nightly job too, created at START
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.cron_ticker", db_url, str(START.timestamp()), str(STEP), str(STEPS)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        counts: list[int] = []
        threads = [threading.Thread(target=lambda: counts.append(_thread_ticker(db_url))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for proc in processes:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()
            counts.append(int(out.decode().split()[-1]))

        end = START.timestamp() + STEPS * STEP
        expected = {
            key: parse_cron(cron, zone).fire_times(after=START.timestamp(), until=end)
            for key, (cron, zone) in SCHEDULES.items()
        }
        expected["tests.cron.nightly"] = parse_cron("0 2 * * *", "Europe/Berlin").fire_times(
            after=START.timestamp(), until=end
        )
        assert {k: len(v) for k, v in expected.items()} == {
            "quarterly": 672,
            # Wall-clock instants: the repeated 02:00 of the fall-back night is one more real hour, not a 169th.
            "hourly-berlin": 168,
            "nightly-berlin": 7,
            "weekdays-ny": 5,
            "tests.cron.nightly": 6,  # 02:00 Berlin on the Monday was 00:00 UTC, before START
        }
        jobs = setup.jobs(limit=10_000)
        by_schedule: Counter[str] = Counter()
        run_times: dict[str, list[float]] = {}
        for info in jobs:
            key = info.args["scope"] if info.name == "tests.cron.report" else info.name
            by_schedule[key] += 1
            assert info.run_at is not None
            run_times.setdefault(key, []).append(info.run_at.timestamp())
        for key, times in expected.items():
            assert sorted(run_times[key]) == times, key
        # Every fire was decided by exactly one of the four (the split between them varies run to run).
        # Other declared schedules of this process (from modules earlier tests imported) count too.
        print(f"fires decided per scheduler: {counts}")
        recorded = sum(len(setup.store.schedule_fires(s.key)) for s in setup.store.list_schedules())
        assert sum(counts) == recorded >= sum(len(v) for v in expected.values())
        assert all(s["missed"] == 0 for s in setup.schedules() if s["key"] in expected)
    finally:
        setup.close()


def _thread_ticker(db_url: str) -> int:
    clock = FakeClock(START)
    queue = JobQueue(database_url=db_url, clock=clock, **FAST)
    try:
        return tick_through(queue, clock, START.timestamp(), STEP, STEPS)
    finally:
        queue.close()


def test_the_week_spans_berlin_fall_back() -> None:
    """The simulated week holds 2026-10-25, so the hourly Berlin schedule meets an ambiguous hour."""
    night = datetime(2026, 10, 25, tzinfo=UTC)
    assert START < night < START + timedelta(seconds=STEPS * STEP)

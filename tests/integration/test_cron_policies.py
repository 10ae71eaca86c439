"""Cron after an outage (catch-up), with a run still going (overlap), and across DST; both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobkit import FakeClock, JobQueue
from tests.cron_jobs import Report

T0 = datetime(2026, 12, 7, 0, 0, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock, at T0 (conftest's ``clocked_queue`` runs on it)."""
    return FakeClock(T0)


@pytest.fixture
def cq(clocked_queue: JobQueue) -> JobQueue:
    """A queue on the fake clock."""
    return clocked_queue


def outage(queue: JobQueue, clock: FakeClock, **policy: Any) -> tuple[list[int], dict[str, Any]]:
    """An hourly schedule fires at 01:00, no scheduler runs for 3 hours, one ticks at 04:30.

    Returns the UTC hours of the jobs made (oldest first) and the schedule's listing row.
    """
    queue.schedule(Report, cron="0 * * * *", key="hourly", **policy)
    clock.set(T0.replace(hour=1, second=5))
    queue.scheduler.run_once()
    clock.set(T0.replace(hour=4, minute=30))
    queue.scheduler.run_once()
    jobs = sorted(queue.jobs(name="tests.cron.report"), key=lambda j: j.id)
    [row] = [s for s in queue.schedules() if s["key"] == "hourly"]
    return [j.run_at.astimezone(UTC).hour for j in jobs if j.run_at is not None], row


def test_catchup_skip_fires_nothing_missed(cq: JobQueue, clock: FakeClock) -> None:
    """skip: the 02:00, 03:00 and 04:00 fires are counted missed, none runs late."""
    hours, row = outage(cq, clock, catchup="skip")
    assert hours == [1]
    assert row["missed"] == 3


def test_catchup_latest_fires_the_newest_missed_time(cq: JobQueue, clock: FakeClock) -> None:
    """latest (the default): only 04:00 runs, within its one-period window; two are missed."""
    hours, row = outage(cq, clock)
    assert hours == [1, 4]
    assert row["missed"] == 2


def test_catchup_latest_outside_its_window_fires_nothing(cq: JobQueue, clock: FakeClock) -> None:
    """latest with a 10-minute window: 04:00 is 30 minutes late, so nothing runs."""
    hours, row = outage(cq, clock, catchup_window=timedelta(minutes=10))
    assert hours == [1]
    assert row["missed"] == 3


def test_catchup_all_fires_every_missed_time(cq: JobQueue, clock: FakeClock) -> None:
    """all: 02:00, 03:00 and 04:00 each run once, in order."""
    hours, row = outage(cq, clock, catchup="all")
    assert hours == [1, 2, 3, 4]
    assert row["missed"] == 0


def test_catchup_all_within_a_window(cq: JobQueue, clock: FakeClock) -> None:
    """all with a 2-hour window: 03:00 and 04:00 run, 02:00 is too late."""
    hours, row = outage(cq, clock, catchup="all", catchup_window=7200)
    assert hours == [1, 3, 4]
    assert row["missed"] == 1


def test_the_next_fire_after_an_outage_is_on_time(cq: JobQueue, clock: FakeClock) -> None:
    """After catching up, the schedule fires at its next time as usual."""
    outage(cq, clock, catchup="skip")
    clock.set(T0.replace(hour=5, second=1))
    [fire] = cq.scheduler.run_once()
    assert fire.fire_at == T0.replace(hour=5, second=0).timestamp()


def test_overlap_allow_runs_beside_the_previous_run(cq: JobQueue, clock: FakeClock) -> None:
    """allow (the default): the 04:00 job is enqueued while the 01:00 one still waits."""
    hours, _ = outage(cq, clock, overlap="allow")
    assert hours == [1, 4]
    assert [j.status for j in cq.jobs(name="tests.cron.report")] == ["pending", "pending"]


def test_overlap_skip_waits_for_the_previous_run(cq: JobQueue, clock: FakeClock) -> None:
    """skip: the 01:00 job is still pending, so 04:00 makes no job and counts as missed."""
    hours, row = outage(cq, clock, overlap="skip")
    assert hours == [1]
    assert row["missed"] == 3
    assert [outcome for _, _, outcome in cq.store.schedule_fires("hourly")] == ["enqueued", "skipped"]
    cq.drain()  # the previous run ends: the next fire runs again
    clock.set(T0.replace(hour=5, second=1))
    assert [f.job_id is not None for f in cq.scheduler.run_once()] == [True]


def test_overlap_skip_with_catchup_all_enqueues_one(cq: JobQueue, clock: FakeClock) -> None:
    """skip with all: the previous run is done, the first missed fire runs and the others wait for it."""
    cq.schedule(Report, cron="0 * * * *", key="hourly", overlap="skip", catchup="all")
    clock.set(T0.replace(hour=4, minute=30))
    fires = cq.scheduler.run_once()
    assert [f.job_id is not None for f in fires] == [True, False, False, False]


def test_overlap_cancel_previous_cancels_the_unfinished_run(cq: JobQueue, clock: FakeClock) -> None:
    """cancel_previous: the pending 01:00 job is cancelled when 04:00 fires."""
    outage(cq, clock, overlap="cancel_previous")
    by_hour = {j.run_at.astimezone(UTC).hour: j.status for j in cq.jobs(name="tests.cron.report") if j.run_at}
    assert by_hour == {1: "cancelled", 4: "pending"}


# -- DST: tick every 15 minutes across each 2026 transition ----------------------------------------


def fire_times(queue: JobQueue, clock: FakeClock, cron: str, zone: str, start: datetime, hours: int) -> list[str]:
    """Schedule ``cron`` in ``zone`` at ``start``, tick every 15 minutes for ``hours``; local fire times."""
    clock.set(start)
    queue.schedule(Report, cron=cron, timezone=zone, key="dst", catchup="all")
    fired: list[float] = []
    for step in range(1, hours * 4 + 1):
        clock.set(start + timedelta(minutes=15 * step))
        fired.extend(f.fire_at for f in queue.scheduler.run_once() if f.key == "dst")
    tz = ZoneInfo(zone)
    return [datetime.fromtimestamp(t, tz).strftime("%m-%d %H:%M%z") for t in fired]


BERLIN_SPRING = datetime(2026, 3, 28, 12, tzinfo=UTC)
BERLIN_FALL = datetime(2026, 10, 24, 12, tzinfo=UTC)
NEW_YORK_SPRING = datetime(2026, 3, 7, 12, tzinfo=UTC)
NEW_YORK_FALL = datetime(2026, 10, 31, 12, tzinfo=UTC)


def test_berlin_spring_forward_fires_a_skipped_fixed_time_after_the_gap(cq: JobQueue, clock: FakeClock) -> None:
    """30 2 * * * in Europe/Berlin fires at 03:00 local on 2026-03-29 (Vixie cron's rule)."""
    times = fire_times(cq, clock, "30 2 * * *", "Europe/Berlin", BERLIN_SPRING, 48)
    assert times == ["03-29 03:00+0200", "03-30 02:30+0200"]


def test_berlin_fall_back_fires_a_fixed_time_once(cq: JobQueue, clock: FakeClock) -> None:
    """30 2 * * * in Europe/Berlin fires once on 2026-10-25, at the first 02:30 (+02:00)."""
    times = fire_times(cq, clock, "30 2 * * *", "Europe/Berlin", BERLIN_FALL, 48)
    assert times == ["10-25 02:30+0200", "10-26 02:30+0100"]


def test_berlin_hourly_follows_wall_clock_instants(cq: JobQueue, clock: FakeClock) -> None:
    """0 * * * * in Europe/Berlin: no 02:00 on 2026-03-29, two 02:00s on 2026-10-25."""
    spring = fire_times(cq, clock, "0 * * * *", "Europe/Berlin", datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 3)
    assert spring == ["03-29 01:00+0100", "03-29 03:00+0200", "03-29 04:00+0200"]
    cq.unschedule("dst")
    fall = fire_times(cq, clock, "0 * * * *", "Europe/Berlin", datetime(2026, 10, 24, 22, 30, tzinfo=UTC), 3)
    assert fall == ["10-25 01:00+0200", "10-25 02:00+0200", "10-25 02:00+0100"]


def test_new_york_spring_forward_fires_a_skipped_fixed_time_after_the_gap(cq: JobQueue, clock: FakeClock) -> None:
    """30 2 * * * in America/New_York fires at 03:00 local on 2026-03-08."""
    times = fire_times(cq, clock, "30 2 * * *", "America/New_York", NEW_YORK_SPRING, 48)
    assert times == ["03-08 03:00-0400", "03-09 02:30-0400"]


def test_new_york_fall_back_fires_a_fixed_time_once(cq: JobQueue, clock: FakeClock) -> None:
    """30 1 * * * in America/New_York fires once on 2026-11-01, at the first 01:30 (-04:00)."""
    times = fire_times(cq, clock, "30 1 * * *", "America/New_York", NEW_YORK_FALL, 48)
    assert times == ["11-01 01:30-0400", "11-02 01:30-0500"]


def test_new_york_stepped_minutes_follow_wall_clock_instants(cq: JobQueue, clock: FakeClock) -> None:
    """*/30 * * * * in America/New_York fires every 30 real minutes through the fall-back hour."""
    times = fire_times(cq, clock, "*/30 * * * *", "America/New_York", datetime(2026, 11, 1, 4, 45, tzinfo=UTC), 2)
    assert times == ["11-01 01:00-0400", "11-01 01:30-0400", "11-01 01:00-0500", "11-01 01:30-0500"]

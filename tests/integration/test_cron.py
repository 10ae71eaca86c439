"""Cron schedules on both databases, driven by a fake clock: fires, catch-up, overlap, control."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

import jobkit
from jobkit import FakeClock, JobQueue, SystemClock
from tests.chaos.cluster import wait_until
from tests.conftest import FAST
from tests.cron_jobs import Report
from tests.rate_jobs import PerAccountRate
from tests.unique_jobs import PerAccount

T0 = datetime(2026, 12, 7, 0, 0, 30, tzinfo=UTC)  # a Monday, just after midnight


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock, at T0 (conftest's ``clocked_queue`` runs on it)."""
    return FakeClock(T0)


@pytest.fixture
def cq(clocked_queue: JobQueue) -> JobQueue:
    """A queue on the fake clock at T0."""
    return clocked_queue


def at(clock: FakeClock, hours: float = 0, minutes: float = 0, seconds: float = 0) -> None:
    """Set the clock to T0 (00:00:30) plus an offset."""
    clock.set(T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds))


def report_jobs(queue: JobQueue, key_queue: str = "default") -> list[jobkit.JobInfo]:
    """The report jobs, oldest first."""
    return sorted(queue.jobs(name="tests.cron.report"), key=lambda j: j.id)


def hour_of(info: jobkit.JobInfo) -> int:
    """The UTC hour a job was scheduled to run at."""
    assert info.run_at is not None
    return info.run_at.astimezone(UTC).hour


def test_a_schedule_fires_once_per_fire_time(cq: JobQueue, clock: FakeClock) -> None:
    """An hourly schedule makes one job at each hour, however often the scheduler ticks."""
    cq.schedule(Report, cron="@hourly", args={"scope": "h"}, key="hourly")
    assert cq.scheduler.run_once() == []
    for minute in (30, 59.5, 60.1, 61, 90, 120.2, 121):
        at(clock, minutes=minute)
        cq.scheduler.run_once()
    jobs = report_jobs(cq)
    assert [hour_of(j) for j in jobs] == [1, 2]
    assert all(j.args == {"scope": "h"} for j in jobs)


def test_a_fired_job_runs_with_its_arguments(cq: JobQueue, clock: FakeClock) -> None:
    """The job a fire enqueues is claimed and run by the worker like any other."""
    cq.schedule(Report, cron="*/5 * * * *", args={"scope": "eu"}, key="five")
    at(clock, minutes=5)
    [fire] = cq.scheduler.run_once()
    assert fire.job_id is not None
    assert cq.run_once() == 1
    assert cq.handle(fire.job_id).result(timeout=5) == "eu"


def test_two_schedulers_at_the_same_instant_fire_once(cq: JobQueue, db_url: str, clock: FakeClock) -> None:
    """Schedulers of two queues ticking at once on the same database make one job per fire time."""
    other = JobQueue(database_url=db_url, clock=clock, **FAST)
    try:
        cq.schedule(Report, cron="* * * * *", key="minutely")
        results: list[int] = []
        for minute in range(1, 11):
            at(clock, minutes=minute)
            barrier = threading.Barrier(2)

            def tick(q: JobQueue) -> None:
                barrier.wait()
                results.append(len(q.scheduler.run_once()))

            threads = [threading.Thread(target=tick, args=(q,)) for q in (cq, other)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert sum(results) == 10
        assert len(report_jobs(cq)) == 10
    finally:
        other.close()


def test_declared_schedules_are_upserted_without_deleting_others(cq: JobQueue) -> None:
    """A scheduler upserts @job(cron=...) schedules under the job's name and keeps runtime ones."""
    cq.schedule(Report, cron="@daily", key="runtime-one")
    cq.scheduler.sync()
    listed = {s["key"]: s for s in cq.schedules()}
    assert listed["tests.cron.nightly"]["source"] == "code"
    assert listed["tests.cron.nightly"]["timezone"] == "Europe/Berlin"
    assert listed["runtime-one"]["source"] == "runtime"


def test_a_redeclared_schedule_keeps_its_state(cq: JobQueue, clock: FakeClock) -> None:
    """Redefining a schedule changes its expression but keeps its last fire and pause."""
    cq.schedule(Report, cron="@hourly", key="k")
    at(clock, hours=1)
    cq.scheduler.run_once()
    cq.pause_schedule("k")
    cq.schedule(Report, cron="*/30 * * * *", key="k")
    [row] = [s for s in cq.schedules() if s["key"] == "k"]
    assert row["cron"] == "*/30 * * * *"
    assert row["paused"] is True
    assert row["last_fire_at"] == (T0 + timedelta(minutes=59, seconds=30)).timestamp()


def test_a_paused_schedule_skips_its_fire_times(cq: JobQueue, clock: FakeClock) -> None:
    """No job while paused; after resume the next fire fires and the paused-over ones do not."""
    cq.schedule(Report, cron="@hourly", key="k")
    assert cq.pause_schedule("k")
    at(clock, hours=1)
    assert cq.scheduler.run_once() == []
    at(clock, hours=1, minutes=10)
    assert cq.resume_schedule("k")
    assert cq.scheduler.run_once() == []  # 01:00 was declined while paused, not missed
    at(clock, hours=2)
    cq.scheduler.run_once()
    assert [hour_of(j) for j in report_jobs(cq)] == [2]
    assert not cq.pause_schedule("missing")


def test_unschedule_deletes_a_schedule(cq: JobQueue, clock: FakeClock) -> None:
    """An unscheduled key fires no more; unscheduling it again says it is gone."""
    cq.schedule(Report, cron="@hourly", key="k")
    assert cq.unschedule("k")
    assert not cq.unschedule("k")
    at(clock, hours=3)
    cq.scheduler.run_once()
    assert report_jobs(cq) == []


def test_run_schedule_fires_now(cq: JobQueue) -> None:
    """``run_schedule`` enqueues the schedule's job at once, with its arguments."""
    cq.schedule(Report, cron="@yearly", args={"scope": "now"}, key="k")
    handle = cq.run_schedule("k")
    assert handle.status() == "pending"
    assert cq.run_once() == 1
    assert handle.result(timeout=5) == "now"
    [row] = [s for s in cq.schedules() if s["key"] == "k"]
    assert row["last_job_id"] == handle.id
    assert row["last_job_status"] == "completed"
    with pytest.raises(LookupError):
        cq.run_schedule("missing")


def test_fire_rows_have_their_own_retention(cq: JobQueue, clock: FakeClock) -> None:
    """Pruning jobs keeps fire rows (no fire time reopens); fire rows go after cron_retention."""
    cq.schedule(Report, cron="@hourly", key="k")
    at(clock, hours=1)
    cq.scheduler.run_once()
    cq.drain()
    clock.advance(timedelta(days=8))
    assert cq.worker.prune_once() == 1  # the finished job is older than the 7-day retention
    assert len(cq.store.schedule_fires("k")) == 1
    clock.advance(timedelta(days=30))
    assert cq.worker.maintenance.prune_fires_once() == 1
    assert cq.store.schedule_fires("k") == []


class FastClock(SystemClock):
    """The real clock of a process that runs two hours fast."""

    def now(self) -> float:
        return time.time() + 7200.0


def test_fire_times_come_from_the_database_clock(db_url: str) -> None:
    """On the real clock a process two hours fast still fires at the database's time, not its own."""
    queue = JobQueue(database_url=db_url, clock=FastClock(), **FAST)
    try:
        queue.schedule(Report, cron="* * * * * *", key="every-second", catchup="skip")
        fires = wait_until(queue.scheduler.run_once, 10, "a fire on the real clock", interval=0.2)
        assert abs(fires[0].fire_at - queue.store.now()) < 60
    finally:
        queue.close()


def test_an_invalid_runtime_schedule_is_refused_naming_job_and_key(cq: JobQueue) -> None:
    """queue.schedule refuses a bad expression, timezone or argument, naming the job and the key; nothing is stored."""
    cases = [
        ({"cron": "*/0 * * * *"}, "tests.cron.report \\(schedule 'k'\\): cron '\\*/0 \\* \\* \\* \\*'"),
        ({"cron": "@daily", "timezone": "Nowhere/Land"}, "cron_timezone 'Nowhere/Land' is not a known IANA timezone"),
        ({"cron": "@daily", "args": {"scope": 3}}, "tests.cron.report \\(schedule 'k'\\): cron_args are invalid"),
        ({"cron": "@daily", "overlap": "sometimes"}, "overlap must be one of"),
    ]
    for options, message in cases:
        with pytest.raises(jobkit.JobDefinitionError, match=message):
            cq.schedule(Report, key="k", **options)  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="no job type named 'nope'"):
        cq.schedule("nope", cron="@daily", key="k")
    assert "k" not in {s["key"] for s in cq.schedules()}


def test_a_starting_worker_stores_the_declared_schedules(queue: JobQueue) -> None:
    """queue.start() upserts every @job(cron=...) schedule before its scheduler first ticks."""
    assert queue.store.list_schedules() == []
    queue.start()
    stored = {s.key: s for s in queue.store.list_schedules()}
    assert stored["tests.cron.nightly"].cron == "0 2 * * *"
    assert stored["tests.cron.nightly"].args == '{"scope":"nightly"}'


def test_job_types_show_a_declared_schedule(cq: JobQueue) -> None:
    """job_types() names the cron expression and timezone of a type declared with cron=."""
    nightly = cq.job_types()["tests.cron.nightly"]
    assert (nightly["cron"], nightly["cron_timezone"]) == ("0 2 * * *", "Europe/Berlin")
    assert "cron" not in cq.job_types()["tests.cron.report"]


def test_a_running_worker_keeps_up_with_an_every_second_schedule(db_url: str) -> None:
    """A started worker's own scheduler thread fires a per-second schedule and its pool runs the jobs."""
    queue = JobQueue(database_url=db_url, cron_interval=0.2, **FAST)
    try:
        queue.schedule(Report, cron="* * * * * *", key="every-second", catchup="skip")
        queue.start()
        wait_until(lambda: len(queue.jobs(name="tests.cron.report", status="completed")) >= 4, 15, "4 runs")
        [row] = [s for s in queue.schedules() if s["key"] == "every-second"]
        assert row["last_job_id"] is not None and row["next_fire_at"] > row["last_fire_at"]
    finally:
        queue.close()


def test_a_fired_job_holds_its_types_concurrency_key(cq: JobQueue, clock: FakeClock) -> None:
    """A job a fire enqueues counts toward its type's concurrency key, as a perform_later of it does."""
    held = PerAccount.perform_later(account_id=7)
    cq.schedule(PerAccount, cron="*/5 * * * *", args={"account_id": 7}, key="keyed")
    at(clock, minutes=5)
    [fire] = cq.scheduler.run_once()
    assert fire.job_id is not None
    names = ["tests.keys.per_account"]
    claimed = cq.store.claim(worker="w", limit=10, names=names, queues=None, now=cq.clock.now(), keyed=names)
    assert [job.id for job in claimed] == [held.id]  # limit 1: the fired job waits for the key
    assert cq.handle(fire.job_id).why() == f"concurrency key account:7 full (1/1, held by job {held.id})"


def test_a_fired_job_counts_against_its_types_rate_limit(cq: JobQueue, clock: FakeClock) -> None:
    """A job a fire enqueues waits for its type's rate-limit window, as a perform_later of it does."""
    cq.store.register_worker("w-why", host="h", pid=1, queues=None, concurrency=1, names=["tests.rate.per_account"])
    first = PerAccountRate.perform_later(account_id=3)
    second = PerAccountRate.perform_later(account_id=3)
    cq.schedule(PerAccountRate, cron="*/5 * * * *", args={"account_id": 3}, key="rated")
    at(clock, minutes=5)
    [fire] = cq.scheduler.run_once()
    assert fire.job_id is not None
    cq.drain()
    assert (first.status(), second.status()) == ("completed", "completed")
    fired = cq.handle(fire.job_id)
    assert fired.status() == "pending"  # 2/m: the window is full
    assert fired.why().startswith("rate limit tests.rate.per_account:account:3 (next slot in")

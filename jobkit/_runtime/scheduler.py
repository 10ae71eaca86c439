"""The scheduler: turns due cron fire times into jobs, from every worker at once, each fire once.

There is no leader. Every worker's scheduler ticks; a tick reads the schedules, decides for each
one which fire times are due and what each becomes (:func:`plan`, by the catch-up and overlap
policies), and hands that decision to the store, which executes it in one transaction: a
compare-and-set of the schedule's ``last_fire_at``, a fire row unique on (key, fire time) and
the job. Whichever scheduler commits first fires; the others find the schedule moved on.

Fire times come from the database's clock (a queue on a fake clock: from that clock), so
workers whose own clocks disagree still agree on what is due.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from jobkit._cron import CronSpec, parse_cron, period
from jobkit._recurrence import Recurrence, build_recurrence
from jobkit._registry import MAX_NAME, JobType, name_problem
from jobkit._runtime.gates import concurrency_keys, rate_keys
from jobkit._runtime.timers import Timers
from jobkit._settings import Settings
from jobkit._store import NewJob, NewSchedule, PlannedFire, ScheduleRecord, Store
from jobkit._vocabulary import Event, EventType, JobState
from jobkit.errors import JobDefinitionError

log = logging.getLogger("jobkit.scheduler")

#: The states of a previous run that ``overlap="skip"`` waits for (and ``cancel_previous`` cancels).
ACTIVE = frozenset({JobState.PENDING, JobState.RUNNING, JobState.PAUSED})
#: ``catchup="skip"``: a fire later than this (or one period, if shorter) counts as missed.
SKIP_LATENESS = 60.0
#: ``catchup="all"`` without a window enqueues at most this many missed fires (the newest).
MAX_CATCHUP = 1000
#: Missed fires are counted up to this many per tick (a counter, not worth an unbounded walk).
MAX_COUNTED = 10_000


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How often the scheduler ticks."""

    interval: float = 1.0

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be more than 0 seconds, got {self.interval}")

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        """The scheduler's part of the queue's settings."""
        return cls(interval=settings.cron_interval)


@dataclass(frozen=True, slots=True)
class CronFire:
    """One fire time this scheduler decided: the job it enqueued, or None when overlap skipped it."""

    key: str
    fire_at: float
    job_id: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one tick makes of a schedule: fires (each with or without a job) and how many were missed."""

    fires: list[float] = field(default_factory=list)
    enqueue: list[bool] = field(default_factory=list)
    missed: int = 0
    latest: float | None = None


@lru_cache(maxsize=1024)
def spec_of(cron: str, timezone: str) -> CronSpec:
    """The parsed expression (stored text is parsed once per process)."""
    return parse_cron(cron, timezone)


def previous_fire(spec: CronSpec, *, now: float, floor: float) -> float | None:
    """The newest fire time in ``(floor, now]``, or None; looks back a little further each step."""
    step = 60.0
    while True:
        start = max(floor, now - step)
        found = spec.fire_times(after=start, until=now)
        if found:
            return found[-1]
        if start <= floor:
            return None
        step *= 4


def plan(schedule: ScheduleRecord, spec: CronSpec, *, now: float) -> Plan:
    """Decide one tick of ``schedule`` at ``now`` by its catch-up and overlap policies (no I/O)."""
    baseline = schedule.last_fire_at if schedule.last_fire_at is not None else schedule.created_at
    latest = previous_fire(spec, now=now, floor=baseline)
    if latest is None:
        return Plan()
    every = period(spec, latest)
    window = schedule.catchup_window
    if schedule.catchup == "all":
        horizon = now - window if window is not None else now - MAX_CATCHUP * every
        fires = spec.fire_times(after=max(baseline, horizon), until=now)[-MAX_CATCHUP:]
    else:
        if window is None:
            window = every if schedule.catchup == "latest" else min(every, SKIP_LATENESS)
        fires = [latest] if now - latest <= window else []
    due = len(spec.fire_times(after=baseline, until=now, limit=MAX_COUNTED))
    # Overlap: skip leaves a fire without a job while the previous run is unfinished; every
    # other policy enqueues (cancel_previous cancels the earlier run once the fire is recorded).
    active = schedule.last_job_status in ACTIVE
    enqueue = []
    for _ in fires:
        run = not (schedule.overlap == "skip" and active)
        enqueue.append(run)
        active = active or run
    skipped = enqueue.count(False)
    return Plan(fires, enqueue, max(due - len(fires), 0) + skipped, latest)


class Scheduler:
    """Ticks every ``interval`` seconds: upserts declared schedules, then fires what is due."""

    def __init__(
        self,
        config: SchedulerConfig,
        store: Store,
        *,
        now: Callable[[], float],
        types: Callable[[], dict[str, JobType]],
        emit: Callable[[Event], None],
        on_enqueued: Callable[[], None],
    ) -> None:
        self.config = config
        self.store = store
        #: The time fires are decided by: the database's clock, or the queue's fake clock.
        self.now = now
        self.types = types
        self.emit = emit
        #: Called when a tick enqueued jobs: this process's producer may claim them.
        self.on_enqueued = on_enqueued
        self._timers = Timers()
        self._synced: frozenset[tuple[str, int]] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Upsert the declared schedules, then tick every interval in the background."""
        try:
            self.sync()
        except Exception as exc:
            # The database may be away at start: each tick syncs first, so this is only early.
            log.warning("could not store the declared schedules yet: %s", exc)
        self._timers.every(self.config.interval, self.run_once, "cron", first_in=self.config.interval)
        self._timers.start()

    def stop(self) -> None:
        """Stop ticking, waiting for a running tick to finish."""
        self._timers.stop()

    def sync(self) -> int:
        """Upsert every schedule declared with ``@job(cron=...)`` (never deleting others); how many."""
        declared = {name: t.options.recurrence for name, t in self.types().items() if t.options.recurrence}
        marker = frozenset((name, id(r)) for name, r in declared.items())
        with self._lock:
            if marker == self._synced:
                return 0
            now = self.now()
            for name, recurrence in declared.items():
                if recurrence is not None:
                    self.store.upsert_schedule(definition(name, name, recurrence, source="code"), now=now)
            self._synced = marker
        return len(declared)

    def run_once(self) -> list[CronFire]:
        """One tick: every due fire time of every schedule decided, in the calling thread."""
        self.sync()
        now = self.now()
        fired: list[CronFire] = []
        for schedule in self.store.list_schedules():
            if schedule.paused:
                continue
            try:
                fired.extend(self._tick(schedule, now))
            except Exception as exc:
                # One schedule that cannot fire (a stored expression no longer valid, a job type
                # with damaged arguments) never stops the others.
                log.warning("schedule %r could not fire: %s", schedule.key, exc)
        if any(f.job_id is not None for f in fired):
            self.on_enqueued()
        return fired

    def define(
        self,
        job: JobType | str,
        *,
        key: str,
        cron: str,
        args: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        catchup: str = "latest",
        catchup_window: float | timedelta | None = None,
        overlap: str = "allow",
        queue: str | None = None,
    ) -> None:
        """Store (or redefine) a schedule made at run time, validated as ``@job(cron=...)`` is."""
        job_type = self.types().get(job) if isinstance(job, str) else job
        if job_type is None:
            raise LookupError(f"no job type named {job!r} is registered")
        problem = name_problem("key", key, MAX_NAME)
        if problem is not None:
            raise JobDefinitionError(f"{job_type.name}: schedule {problem}")
        recurrence = build_recurrence(
            f"{job_type.name} (schedule {key!r})",
            cron=cron,
            timezone=timezone,
            args=None if args is None else dict(args),
            catchup=catchup,
            catchup_window=catchup_window,
            overlap=overlap,
            queue=queue,
            schema=job_type.options.enqueue_schema,
        )
        # Stamped by the clock fires are decided by, so no fire before this moment is ever due.
        self.store.upsert_schedule(definition(key, job_type.name, recurrence, source="runtime"), now=self.now())

    def remove(self, key: str) -> bool:
        """Delete a schedule (its jobs and fire rows stay); whether it existed."""
        return self.store.delete_schedule(key)

    def pause(self, key: str, *, paused: bool) -> bool:
        """Pause a schedule, or resume it from now (declining the fire times it was paused over)."""
        return self.store.pause_schedule(key, paused=paused, now=self.now())

    def fire_now(self, key: str) -> int:
        """Enqueue the job of schedule ``key`` now, outside its timetable; the job's id."""
        schedule = self.store.get_schedule(key)
        if schedule is None:
            raise LookupError(f"no schedule with key {key!r}")
        now = self.now()
        job_id = self.store.fire_now(key, self._planned(schedule, now), now=now)
        self._enqueued(schedule, job_id)
        self.on_enqueued()
        return job_id

    def describe(self) -> list[dict[str, Any]]:
        """Every schedule with its next fire time, for ``jobkit cron list`` and ``queue.schedules()``."""
        now = self.now()
        rows = []
        for s in self.store.list_schedules():
            try:
                following = spec_of(s.cron, s.timezone).next_fire(max(now, s.last_fire_at or now))
            except ValueError:
                following = None
            rows.append(
                {
                    "key": s.key,
                    "name": s.name,
                    "cron": s.cron,
                    "timezone": s.timezone,
                    "source": s.source,
                    "paused": s.paused,
                    "next_fire_at": None if s.paused else following,
                    "last_fire_at": s.last_fire_at,
                    "last_job_id": s.last_job_id,
                    "last_job_status": s.last_job_status,
                    "missed": s.missed,
                    "catchup": s.catchup,
                    "overlap": s.overlap,
                }
            )
        return rows

    # -- one schedule ----------------------------------------------------------------------------

    def _tick(self, schedule: ScheduleRecord, now: float) -> list[CronFire]:
        decided = plan(schedule, spec_of(schedule.cron, schedule.timezone), now=now)
        if decided.latest is None:
            return []
        planned = [
            self._planned(schedule, fire_at) if run else PlannedFire(fire_at, None)
            for fire_at, run in zip(decided.fires, decided.enqueue, strict=True)
        ]
        recorded = self.store.record_fires(
            schedule.key,
            expected_last_fire=schedule.last_fire_at,
            last_fire_at=decided.latest,
            fires=planned,
            missed=decided.missed,
            now=now,
        )
        if recorded is None:
            return []  # another scheduler decided this tick first
        jobs = [r.job_id for r in recorded if r.job_id is not None]
        for job_id in jobs:
            self._enqueued(schedule, job_id)
        if schedule.overlap == "cancel_previous" and jobs:
            previous = schedule.last_job_id if schedule.last_job_status in ACTIVE else None
            earlier = ([] if previous is None else [previous]) + jobs[:-1]
            for old in earlier:
                if self.store.cancel_job(old, now=now) == JobState.CANCELLED:
                    self.emit(Event.of(EventType.CANCELLED, old))
        return [CronFire(schedule.key, r.fire_at, r.job_id) for r in recorded]

    def _job(self, schedule: ScheduleRecord, run_at: float) -> NewJob:
        job_type = self.types().get(schedule.name)
        options = job_type.options if job_type is not None else None
        queue = schedule.queue or (options.queue if options else "default")
        priority = options.priority if options else 0
        retries = options.max_retries if options else 3
        return NewJob(schedule.name, schedule.args, queue, priority, run_at, retries)

    def _planned(self, schedule: ScheduleRecord, fire_at: float) -> PlannedFire:
        # A fired job is held back by its type's concurrency keys and rate limit like any other enqueue of it.
        job = self._job(schedule, fire_at)
        job_type = self.types().get(schedule.name)
        if job_type is None:
            return PlannedFire(fire_at, job)
        keys, rates = concurrency_keys(job_type.options, [job.args]), rate_keys(job_type.options, [job.args])
        return PlannedFire(fire_at, job, None if keys is None else keys[0], None if rates is None else rates[0])

    def _enqueued(self, schedule: ScheduleRecord, job_id: int) -> None:
        queue = schedule.queue
        if queue is None:
            job_type = self.types().get(schedule.name)
            queue = job_type.options.queue if job_type is not None else "default"
        self.emit(Event.of(EventType.ENQUEUED, job_id, name=schedule.name, queue=queue, schedule=schedule.key))


def definition(key: str, name: str, recurrence: Recurrence, *, source: str) -> NewSchedule:
    """The stored definition of a schedule."""
    return NewSchedule(
        key=key,
        name=name,
        cron=recurrence.cron,
        timezone=recurrence.timezone,
        args=recurrence.args_json,
        queue=recurrence.queue,
        catchup=recurrence.catchup,
        catchup_window=recurrence.catchup_window,
        overlap=recurrence.overlap,
        source=source,
    )

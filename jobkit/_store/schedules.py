"""Recurring jobs in the store: schedules, and the one transaction that records a fire with its job.

The scheduler above decides which fire times are due and what each becomes; :meth:`record_fires`
executes that decision atomically: a compare-and-set of the schedule's ``last_fire_at``, one fire
row per time (its primary key refuses a time recorded before) and the job of each fire, all in
one transaction, so two schedulers ticking at once can never both fire the same time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import sqlalchemy as sa

from jobkit._store.engine import PATIENT, READ, WRITE, transaction
from jobkit._store.jobs import Jobs
from jobkit._store.records import (
    Fired,
    NewSchedule,
    PlannedFire,
    ScheduleRecord,
    schedule_record,
)


class Schedules(Jobs):
    """Schedules and their fires."""

    @transaction(WRITE, retry=PATIENT)
    def upsert_schedule(self, conn: sa.Connection, schedule: NewSchedule, *, now: float) -> None:
        """Insert a schedule, or give an existing one this definition (its state is kept)."""
        conn.execute(self.dialect.upsert_schedule, {**asdict(schedule), "now": now})

    @transaction(WRITE, retry=PATIENT)
    def delete_schedule(self, conn: sa.Connection, key: str) -> bool:
        """Delete a schedule (its fire rows stay until pruned); whether it existed."""
        return bool(conn.execute(self.dialect.delete_schedule, {"key": key}).rowcount)

    @transaction(WRITE, retry=PATIENT)
    def pause_schedule(self, conn: sa.Connection, key: str, *, paused: bool, now: float) -> bool:
        """Pause a schedule, or resume it from ``now`` (the fire times it was paused over are skipped)."""
        statement = self.dialect.pause_schedule if paused else self.dialect.resume_schedule
        return bool(conn.execute(statement, {"key": key, "now": now}).rowcount)

    @transaction(READ, retry=PATIENT)
    def list_schedules(self, conn: sa.Connection) -> list[ScheduleRecord]:
        """Every schedule, by key, with the status of its last job."""
        return [schedule_record(row) for row in conn.execute(self.dialect.list_schedules)]

    @transaction(READ, retry=PATIENT)
    def get_schedule(self, conn: sa.Connection, key: str) -> ScheduleRecord | None:
        """One schedule, or None."""
        row = conn.execute(self.dialect.get_schedule, {"key": key}).first()
        return None if row is None else schedule_record(row)

    @transaction(READ, retry=PATIENT)
    def schedule_fires(self, conn: sa.Connection, key: str) -> list[tuple[float, int | None, str]]:
        """The recorded fires of a schedule, oldest first: (fire time, job id, outcome)."""
        return [(float(r[0]), r[1], str(r[2])) for r in conn.execute(self.dialect.list_fires, {"key": key})]

    @transaction(WRITE, retry=PATIENT)
    def record_fires(
        self,
        conn: sa.Connection,
        key: str,
        *,
        expected_last_fire: float | None,
        last_fire_at: float,
        fires: Sequence[PlannedFire],
        missed: int,
        now: float,
    ) -> list[Fired] | None:
        """Decide one tick of a schedule: None when another scheduler decided it first (or it is paused).

        Otherwise moves ``last_fire_at`` on, adds ``missed``, records each planned fire that no one
        recorded before and enqueues its job; returns those fires.
        """
        advanced = conn.execute(
            self.dialect.advance_schedule,
            {"key": key, "expected": expected_last_fire, "last_fire_at": last_fire_at, "missed": missed, "now": now},
        ).rowcount
        if not advanced:
            return None
        return self._fire(conn, key, fires, now, outcome="enqueued")

    @transaction(WRITE, retry=PATIENT)
    def fire_now(self, conn: sa.Connection, key: str, fire: PlannedFire, *, now: float) -> int:
        """Enqueue a schedule's job now, outside its timetable (``jobkit cron run``); the job's id."""
        fired = self._fire(conn, key, [fire], now, outcome="manual")
        job_id = fired[0].job_id if fired else None
        if job_id is None:  # a fire already recorded at this very instant
            raise RuntimeError(f"schedule {key!r} already fired at {now}")
        return job_id

    def _fire(
        self, conn: sa.Connection, key: str, fires: Sequence[PlannedFire], now: float, *, outcome: str
    ) -> list[Fired]:
        done: list[Fired] = []
        for fire in fires:
            params = {"key": key, "fire_at": fire.fire_at, "now": now}
            what = outcome if fire.job is not None else "skipped"
            if conn.execute(self.dialect.insert_fire, {**params, "outcome": what}).first() is None:
                continue  # recorded by another scheduler: never enqueued twice
            job_id = None
            if fire.job is not None:
                keys = None if fire.key is None else [fire.key]
                rates = None if fire.rate is None else [fire.rate]
                [job_id] = self._insert_keyed(conn, [fire.job], keys, now, rates)
                conn.execute(self.dialect.set_fire_job, {**params, "job_id": job_id})
                conn.execute(self.dialect.set_last_job, {"key": key, "job_id": job_id})
            done.append(Fired(fire.fire_at, job_id))
        return done

    @transaction(WRITE, retry=PATIENT)
    def prune_fires(self, conn: sa.Connection, *, older_than: float, limit: int = 5000) -> int:
        """Delete fire rows recorded before ``older_than``; how many."""
        return int(conn.execute(self.dialect.prune_fires, {"before": older_than, "limit": limit}).rowcount or 0)

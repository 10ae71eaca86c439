"""The SQL of recurring jobs: schedules and their fire rows, built per dialect.

Upserts and ``ON CONFLICT DO NOTHING`` are spelt alike by SQLite (3.24+) and PostgreSQL; what
differs is how a nullable value is compared (``last_fire_at`` is NULL until the first fire), a
fragment each dialect gives as :attr:`CronStatements.same_last_fire`.
"""

from __future__ import annotations

from typing import ClassVar

import sqlalchemy as sa

from jobkit._store.records import SCHEDULE_COLUMNS, SCHEDULE_DEFINITION_COLUMNS


class CronStatements:
    """Every statement on ``jobkit_schedules`` and ``jobkit_cron_fires``."""

    #: "The schedule's last_fire_at is :expected", NULL included.
    same_last_fire: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        definition = ", ".join(SCHEDULE_DEFINITION_COLUMNS)
        values = ", ".join(f":{c}" for c in SCHEDULE_DEFINITION_COLUMNS)
        # A redeclared schedule takes its new definition but keeps its state (paused, last fire,
        # missed count): a deploy never replays or forgets what was decided.
        updates = ", ".join(f"{c} = excluded.{c}" for c in SCHEDULE_DEFINITION_COLUMNS if c != "key")
        self.upsert_schedule = sa.text(
            f"INSERT INTO jobkit_schedules ({definition}, created_at, updated_at) VALUES ({values}, :now, :now) "
            f"ON CONFLICT (key) DO UPDATE SET {updates}, updated_at = excluded.updated_at"
        )
        columns = ", ".join(f"s.{c}" for c in SCHEDULE_COLUMNS)
        select = (
            f"SELECT {columns}, j.status AS last_job_status FROM jobkit_schedules s "
            "LEFT JOIN jobkit_jobs j ON j.id = s.last_job_id"
        )
        self.list_schedules = sa.text(f"{select} ORDER BY s.key")
        self.get_schedule = sa.text(f"{select} WHERE s.key = :key")
        self.delete_schedule = sa.text("DELETE FROM jobkit_schedules WHERE key = :key")
        self.pause_schedule = sa.text("UPDATE jobkit_schedules SET paused = TRUE, updated_at = :now WHERE key = :key")
        # Resuming moves last_fire_at to now: the fire times passed while paused are not missed
        # runs to catch up on, they were declined.
        self.resume_schedule = sa.text(
            "UPDATE jobkit_schedules SET paused = FALSE, updated_at = :now, last_fire_at = CASE "
            "WHEN paused AND (last_fire_at IS NULL OR last_fire_at < CAST(:now AS DOUBLE PRECISION)) "
            "THEN CAST(:now AS DOUBLE PRECISION) ELSE last_fire_at END WHERE key = :key"
        )
        # The compare-and-set that decides a tick: only the scheduler that read the current
        # last_fire_at moves it on; any other one finds no row and fires nothing.
        self.advance_schedule = sa.text(
            "UPDATE jobkit_schedules SET last_fire_at = :last_fire_at, missed = missed + :missed, "
            f"updated_at = :now WHERE key = :key AND NOT paused AND {self.same_last_fire}"
        )
        self.set_last_job = sa.text("UPDATE jobkit_schedules SET last_job_id = :job_id WHERE key = :key")
        # The fire row is the guarantee: whatever the schedule row says, a fire time recorded once
        # is never recorded (nor enqueued) again.
        self.insert_fire = sa.text(
            "INSERT INTO jobkit_cron_fires (schedule_key, fire_at, job_id, outcome, created_at) "
            "VALUES (:key, :fire_at, NULL, :outcome, :now) ON CONFLICT (schedule_key, fire_at) DO NOTHING "
            "RETURNING fire_at"
        )
        self.set_fire_job = sa.text(
            "UPDATE jobkit_cron_fires SET job_id = :job_id WHERE schedule_key = :key AND fire_at = :fire_at"
        )
        self.list_fires = sa.text(
            "SELECT fire_at, job_id, outcome FROM jobkit_cron_fires WHERE schedule_key = :key ORDER BY fire_at"
        )
        self.prune_fires = sa.text(
            "DELETE FROM jobkit_cron_fires WHERE (schedule_key, fire_at) IN "
            "(SELECT schedule_key, fire_at FROM jobkit_cron_fires WHERE created_at < :before "
            "ORDER BY created_at LIMIT :limit)"
        )

"""The queue's recurring jobs: schedules defined at run time, paused, resumed, fired now, listed.

A mixin of :class:`jobkit.JobQueue`, which provides ``scheduler`` (its worker's) and ``handle``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from jobkit import _job
from jobkit._handle import JobHandle
from jobkit._runtime.scheduler import Scheduler


class QueueSchedules:
    """``queue.schedule`` and friends (docs/scheduling.md)."""

    @property
    def scheduler(self) -> Scheduler:
        """This process's cron scheduler (its worker's); tests call ``queue.scheduler.run_once()``."""
        raise NotImplementedError

    def handle(self, job_id: int) -> JobHandle:
        """A handle to the job ``job_id``."""
        raise NotImplementedError

    def schedule(
        self,
        job: type[_job.BaseJob[Any]] | str,
        *,
        cron: str,
        key: str,
        args: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        catchup: Literal["skip", "latest", "all"] = "latest",
        catchup_window: float | timedelta | None = None,
        overlap: Literal["allow", "skip", "cancel_previous"] = "allow",
        queue: str | None = None,
    ) -> None:
        """Create or redefine the schedule ``key`` at run time (stored: every worker fires it, once per time).

        Example::

            queue.schedule(NightlyReport, cron="*/15 * * * *", args={"scope": "eu"}, key="report-15m")
        """
        self.scheduler.define(
            job if isinstance(job, str) else job.job_type(),
            key=key,
            cron=cron,
            args=args,
            timezone=timezone,
            catchup=catchup,
            catchup_window=catchup_window,
            overlap=overlap,
            queue=queue,
        )

    def unschedule(self, key: str) -> bool:
        """Delete the schedule ``key`` (its jobs stay); whether it existed. A schedule declared in code
        comes back at the next worker start unless its ``cron=`` is removed."""
        return self.scheduler.remove(key)

    def pause_schedule(self, key: str) -> bool:
        """Stop the schedule ``key`` firing (fire times while paused are skipped); whether it exists."""
        return self.scheduler.pause(key, paused=True)

    def resume_schedule(self, key: str) -> bool:
        """Let the schedule ``key`` fire again from now on; whether it exists."""
        return self.scheduler.pause(key, paused=False)

    def run_schedule(self, key: str) -> JobHandle:
        """Enqueue the job of schedule ``key`` now, outside its timetable."""
        return self.handle(self.scheduler.fire_now(key))

    def schedules(self) -> list[dict[str, Any]]:
        """Every stored schedule with its next and last fire, last job's state and missed count."""
        self.scheduler.sync()
        return self.scheduler.describe()

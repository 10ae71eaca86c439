"""The queue's operator actions: discard, delete, clear, retry, pause queues, and the listings.

A mixin of :class:`jobkit.JobQueue` (which provides the attributes declared here), kept apart so
the facade stays a page of wiring; ``JobQueue`` is the only class that uses it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from jobkit._clock import Clock
from jobkit._events import EventBus
from jobkit._handle import JobInfo
from jobkit._plugins import load_plugins
from jobkit._registry import MAX_QUEUE, describe_types, name_problem
from jobkit._settings import Settings
from jobkit._snapshots import info_of, older_than_cutoff
from jobkit._store import Notifier, Store, WorkerRecord
from jobkit._vocabulary import Event, EventType, JobState

log = logging.getLogger("jobkit")


class QueueAdmin:
    """Operator actions on jobs and queues, and what ``jobkit stats``, ``jobs list`` and ``workers`` show."""

    settings: Settings
    clock: Clock
    store: Store
    events: EventBus
    _notifier: Notifier

    def _emit_admin(self, kind: EventType, job_id: int, **extra: Any) -> None:
        self.events.emit(Event.of(kind, job_id, **extra))

    # -- admin ------------------------------------------------------------------------------

    def discard_job(self, job_id: int, reason: str = "discarded by an operator") -> bool:
        """Force a job to failed, recording ``reason``; False if it had ended already (or does not exist).

        A pending (or retrying) or paused job fails at once; a running one is asked to end, and
        ends ``failed`` with a Discard entry whatever its attempt turns into.
        """
        state = self.store.discard_job(job_id, now=self.clock.now(), reason=reason)
        if state == JobState.FAILED:
            self._emit_admin(EventType.FAILED, job_id, error={"type": "Discard", "message": reason})
        return state in (JobState.FAILED, "discarding", "killing")

    def delete_job(self, job_id: int) -> bool:
        """Delete a terminal job with its checkpoint, progress and history; False if it is not terminal."""
        took = self.store.delete_job(job_id)
        if took:
            self._emit_admin(EventType.DELETED, job_id)
        return took

    def clear_completed(
        self,
        *,
        older_than: timedelta | float | datetime | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete completed jobs (optionally finished before ``older_than`` ago, of a type or queue)."""
        before = older_than_cutoff(older_than, self.clock.now())
        return self.store.clear(JobState.COMPLETED, finished_before=before, name=name, queue=queue)

    def clear_failed(
        self,
        *,
        older_than: timedelta | float | datetime | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete failed jobs (optionally older ones, of a type or queue)."""
        before = older_than_cutoff(older_than, self.clock.now())
        return self.store.clear(JobState.FAILED, finished_before=before, name=name, queue=queue)

    def retry_failed(self, *, name: str | None = None, queue: str | None = None) -> int:
        """Every failed job (of a type or queue) back to pending; returns how many."""
        count = self.store.retry_failed(now=self.clock.now(), name=name, queue=queue)
        if count:
            self._notifier.announce()
        return count

    def pause_queue(self, name: str) -> None:
        """Every worker everywhere stops claiming from queue ``name`` until it is resumed."""
        problem = name_problem("queue", name, MAX_QUEUE)
        if problem is not None:
            raise ValueError(problem)  # checked as enqueue checks it: the name is stored
        self.store.pause_queue(name, now=self.clock.now())

    def resume_queue(self, name: str) -> bool:
        """Let workers claim from queue ``name`` again."""
        resumed = self.store.resume_queue(name)
        self._notifier.announce()
        return resumed

    def paused_queues(self) -> list[str]:
        """The queues currently paused."""
        return self.store.paused_queues()

    def stats(self) -> dict[str, Any]:
        """Counts by status, queue and job type, the oldest due pending job's age, and the running count."""
        return self.store.stats(now=self.clock.now())

    def jobs(
        self, *, status: str | None = None, name: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[JobInfo]:
        """Jobs filtered by status, type and queue, newest first."""
        return [info_of(r) for r in self.store.list_jobs(status=status, name=name, queue=queue, limit=limit)]

    def job_types(self) -> dict[str, dict[str, Any]]:
        """Every registered job type (plugins' included) with its options, argument schema and result type.

        Example::

            queue.job_types()["send_email"]["result"]        # 'dict[str, bool]'
        """
        load_plugins(warn=log.warning)
        return describe_types()

    def workers(self) -> list[WorkerRecord]:
        """Registered workers, live and dead, with their last heartbeat and running jobs."""
        return self.store.list_workers(rescue_after=self.settings.rescue_after)

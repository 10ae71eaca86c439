"""Admin actions on jobs and queues, each one transaction that is safe against a job changing state meanwhile.

Every statement names the states it may move a job from, so an action that races with the
worker either takes effect or reports the state it found. An action that changes a job
notifies waiting handles in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from jobkit._store.engine import PATIENT, READ, WRITE, Database, transaction
from jobkit._store.history import with_entry
from jobkit._store.statements import where
from jobkit._vocabulary import TERMINAL_STATES, JobState, Request

#: What a request standing on a running job is reported as.
REQUEST_STATES = {
    Request.PAUSE: "pausing",
    Request.CANCEL: "cancelling",
    Request.DISCARD: "discarding",
    Request.KILL: "killing",
}


#: States a running job may reach between an action's two statements (its attempt requeued or paused).
#: On PostgreSQL's read committed each statement sees the newest committed row, so an action that
#: found the job running and then no longer running tries again; SQLite serialises writers and never
#: needs the second round.
REQUEUED = frozenset({JobState.PENDING, JobState.PAUSED})

#: Enough for a job that requeues on every attempt: each round can only lose to one more commit.
RACE_ROUNDS = 5


class Admin(Database):
    """Cancel, kill, pause, resume, retry, discard and delete jobs; clear and retry in bulk; pause queues."""

    def _ask(self, conn: sa.Connection, job_id: int, request: Request, now: float) -> str | None:
        """Ask a running job's worker to ``request``; returns the state of the request that now stands, or None."""
        params = {"id": job_id, "now": self.bind_now(now), "request": request.value}
        if conn.execute(self.dialect.request[request], params).first():
            return REQUEST_STATES[request]
        row = conn.execute(self.dialect.request_seen, {"id": job_id}).first()
        if row is None:
            return None
        if row.status == JobState.RUNNING and row.cancel_requested in REQUEST_STATES:
            return REQUEST_STATES[Request(row.cancel_requested)]
        return str(row.status)

    def _act(
        self,
        conn: sa.Connection,
        job_id: int,
        now: float,
        request: Request,
        at_once: Callable[[], JobState | None],
        *,
        retry_on: frozenset[JobState] = REQUEUED,
    ) -> str | None:
        """``at_once()`` on a job that is not running (its resulting state, or None), else ask its worker.

        A job that the ask found in ``retry_on`` moved between the two statements (its attempt
        requeued): the action starts over, at most :data:`RACE_ROUNDS` times.
        """
        state: str | None = None
        for _ in range(RACE_ROUNDS):
            taken = at_once()
            if taken is not None:
                self.notify_jobs(conn, [job_id])
                return taken
            state = self._ask(conn, job_id, request, now)
            if state not in retry_on:
                return state
        return state

    def _end_or_ask(self, conn: sa.Connection, job_id: int, now: float, request: Request) -> str | None:
        def cancel_now() -> JobState | None:
            took = conn.execute(self.dialect.cancel_now, {"id": job_id, "now": now}).first()
            return JobState.CANCELLED if took else None

        return self._act(conn, job_id, now, request, cancel_now)

    @transaction(WRITE, retry=PATIENT)
    def cancel_job(self, conn: sa.Connection, job_id: int, *, now: float) -> str | None:
        """Cancel a job: pending or paused at once; running by asking its worker. Returns the resulting state.

        ``cancelled`` when it took effect, ``cancelling`` when a running job's worker was asked (a
        pending pause request is replaced: cancel wins), ``killing``/``discarding`` when a stronger
        request already stands, the terminal status when it had already ended, None when there is no
        such job. The request survives the attempt's end: a retry, snooze, release or rescue of the
        job ends it ``cancelled`` instead.
        """
        return self._end_or_ask(conn, job_id, now, Request.CANCEL)

    @transaction(WRITE, retry=PATIENT)
    def kill_job(self, conn: sa.Connection, job_id: int, *, now: float) -> str | None:
        """End a job whatever it is doing: pending or paused ones at once (``cancelled``), running ones by
        asking their worker to abandon the attempt now (``killing``; it wins over every other request)."""
        return self._end_or_ask(conn, job_id, now, Request.KILL)

    @transaction(WRITE, retry=PATIENT)
    def pause_job(self, conn: sa.Connection, job_id: int, *, now: float) -> str | None:
        """Pause a job: a pending one is held at once (``paused``); a running one is asked to stop (``pausing``).

        A running job with a cancel, kill or discard request standing keeps it (pause never overrides
        them): the state of that request is returned.
        """

        def pause_now() -> JobState | None:
            took = conn.execute(self.dialect.pause_pending, {"id": job_id, "now": now}).first()
            return JobState.PAUSED if took else None

        return self._act(conn, job_id, now, Request.PAUSE, pause_now, retry_on=frozenset({JobState.PENDING}))

    @transaction(WRITE, retry=PATIENT)
    def resume_job(self, conn: sa.Connection, job_id: int, *, now: float) -> str | None:
        """Put a paused job back to ``pending`` (or withdraw a pause not yet delivered to a running job)."""
        if conn.execute(self.dialect.resume_paused, {"id": job_id, "now": self.bind_now(now)}).first():
            self.notify_jobs(conn, [job_id])
            return JobState.PENDING
        if conn.execute(self.dialect.withdraw_pause, {"id": job_id}).first():
            return JobState.RUNNING
        value = conn.execute(self.dialect.status_of, {"id": job_id}).scalar()
        return None if value is None else str(value)

    @transaction(WRITE, retry=PATIENT)
    def retry_job(self, conn: sa.Connection, job_id: int, *, now: float) -> bool:
        """A ``failed`` or ``cancelled`` job back to ``pending`` with fresh retries; its error history is kept."""
        took = conn.execute(self.dialect.retry_job, {"id": job_id, "now": self.bind_now(now)}).first()
        if took:
            self.notify_jobs(conn, [job_id])
        return bool(took)

    @transaction(WRITE, retry=PATIENT)
    def discard_job(
        self, conn: sa.Connection, job_id: int, *, now: float, reason: str = "discarded by an operator"
    ) -> str | None:
        """Force a job to ``failed``, recording why; returns the resulting state.

        ``failed`` for a pending (including retrying) or paused job, at once, with a Discard entry
        carrying ``reason``; ``discarding`` for a running one, whose worker is asked to end it (it
        ends ``failed`` with a Discard entry, whatever its attempt turns into); ``killing`` when a
        kill already stands; otherwise the job's status (None: no such job).
        """

        def discard_now() -> JobState | None:
            row = conn.execute(self.dialect.discard_select, {"id": job_id}).first()
            if row is None:
                return None
            entry = {"attempt": row.attempt, "type": "Discard", "message": reason, "traceback": None, "at": now}
            params = {"id": job_id, "now": now, "errors": with_entry(row.errors, entry)}
            return JobState.FAILED if conn.execute(self.dialect.discard_pending, params).first() else None

        return self._act(conn, job_id, now, Request.DISCARD, discard_now)

    @transaction(WRITE, retry=PATIENT)
    def delete_job(self, conn: sa.Connection, job_id: int) -> bool:
        """Delete a terminal job with its checkpoint, progress and history."""
        took = conn.execute(self.dialect.delete_job, {"id": job_id}).first()
        if took:
            self.notify_jobs(conn, [job_id])
        return bool(took)

    def clear(
        self,
        status: str,
        *,
        finished_before: float | None = None,
        name: str | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete terminal jobs of one status, optionally only older ones, of one type or queue."""
        if status not in TERMINAL_STATES:
            terminal = ", ".join(state for state in JobState if state.terminal)
            raise ValueError(f"can only clear terminal jobs ({terminal}), not {status!r}")
        clause, params = where(status=status, name=name, queue=queue)
        if finished_before is not None:
            clause += " AND finished_at < :before"
            params["before"] = finished_before
        return self._rowcount(self.dialect.clear(clause), params)

    def retry_failed(self, *, now: float, name: str | None = None, queue: str | None = None) -> int:
        """Every ``failed`` job (of one type or queue) back to ``pending``; returns how many."""
        clause, params = where(status=JobState.FAILED.value, name=name, queue=queue)
        return self._rowcount(self.dialect.retry_failed(clause), {**params, "now": self.bind_now(now)})

    @transaction(WRITE, retry=PATIENT)
    def _rowcount(self, conn: sa.Connection, statement: sa.TextClause, params: dict[str, Any]) -> int:
        return int(conn.execute(statement, params).rowcount or 0)

    @transaction(WRITE, retry=PATIENT)
    def pause_queue(self, conn: sa.Connection, queue: str, *, now: float) -> None:
        """Stop every worker everywhere from claiming ``queue``; stored, so it survives restarts."""
        conn.execute(self.dialect.insert_pause, {"q": queue, "now": now})

    @transaction(WRITE, retry=PATIENT)
    def resume_queue(self, conn: sa.Connection, queue: str) -> bool:
        """Let workers claim from ``queue`` again; returns whether it was paused."""
        hit = bool(conn.execute(self.dialect.resume_queue, {"q": queue}).first())
        self.dialect.notify(conn, self.channel, "")
        return hit

    @transaction(READ, retry=PATIENT)
    def paused_queues(self, conn: sa.Connection) -> list[str]:
        """Names of the paused queues."""
        return [str(r[0]) for r in conn.execute(self.dialect.paused_queues)]

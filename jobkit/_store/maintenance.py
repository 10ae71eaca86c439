"""Worker registration, heartbeats, held jobs, rescue, pruning and the WAL checkpoint.

Liveness: on PostgreSQL a heartbeat is stamped with the server's clock and judged against it, so
a worker with a skewed clock can neither rescue a live job nor be rescued while alive. SQLite has
no server clock: each process stamps its heartbeat with its own, and the worker's rescuer judges
a heartbeat by watching it change (:mod:`jobkit._store.liveness`), never by comparing clocks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from jobkit._store.diagnosis import is_transient
from jobkit._store.engine import BEAT, BRIEF, PATIENT, RAW, READ, WRITE, transaction
from jobkit._store.history import discard_entry, with_entry
from jobkit._store.jobs import Jobs
from jobkit._store.liveness import HeartbeatObserver
from jobkit._store.rates_sql import PRUNE_STARTS
from jobkit._store.records import HeldJob, LostJob, Rescue, Rescued, WorkerRecord, worker_record
from jobkit._vocabulary import JobState, TransitionKind

log = logging.getLogger("jobkit.store")


def _lost(row: Any, seen: Any, *, observed: bool, rescue_after: float) -> LostJob:
    """One candidate row as a :class:`LostJob`, built without ever raising on what the row holds."""
    job_id, worker, lease, attempt, max_retries, crashes, errors = row
    return LostJob(
        id=int(job_id),
        worker=None if worker is None else str(worker),
        lease=lease,
        attempt=_int(attempt),
        max_retries=_int(max_retries),
        crashes=_int(crashes),
        errors=errors if isinstance(errors, str) else None,
        attempt_shown=str(attempt),
        observed=observed,
        seen=seen,
        rescue_after=rescue_after,
    )


def _write_params(rescue: Rescue, now: float, bound_now: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bind values of one rescue's write, and of the minimal write tried if that one is refused as data."""
    lost = rescue.job
    message = f"worker {lost.worker} stopped heartbeating while running attempt {lost.attempt_shown}"
    if lost.worker is None:
        message = f"running attempt {lost.attempt_shown} belongs to no worker (worker_id is NULL)"
    if rescue.poisoned:
        message += f"; failed as a poison pill after {lost.crashes + 1} crashes"
    entry = {"attempt": lost.attempt, "type": "WorkerLost", "message": message, "traceback": None, "at": now}
    entry["worker"] = lost.worker
    common = {
        "id": lost.id,
        "lease": lost.lease,
        "worker": lost.worker,
        "after": lost.rescue_after,
        "seen": lost.seen,
        "now": bound_now,
    }
    # If even the planned write is refused as data (a damaged counter, say), the job is failed
    # with the reason and nothing computed from the row.
    return {**common, "errors": with_entry(lost.errors, entry)}, {**common, "errors": json.dumps([entry])}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


class Maintenance(Jobs):
    """The worker rows and everything that keeps the table healthy."""

    @transaction(WRITE, retry=PATIENT)
    def register_worker(
        self,
        conn: sa.Connection,
        worker_id: str,
        *,
        host: str,
        pid: int,
        queues: list[str] | None,
        concurrency: int,
        names: list[str] | None = None,
    ) -> None:
        """Insert this process's worker row, heartbeat stamped like every later heartbeat."""
        params = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queues": json.dumps(queues) if queues else None,
            "concurrency": concurrency,
            "names": None if names is None else json.dumps(names),
            **self.dialect.beat_params(self.process_clock),
        }
        conn.execute(self.dialect.register_worker, params)

    # One quick try: the heartbeat loop itself retries on its own schedule.
    @transaction(BEAT, retry=BRIEF)
    def heartbeat(self, conn: sa.Connection, worker_id: str, *, stuck: int = 0, pool: str | None = None) -> int | None:
        """Renew the process's lease, record its ``stuck`` thread count and ``pool``, count the jobs it holds.

        Returns None when the worker row is gone or marked stopped. The count lets an idle
        worker skip the full reconciliation read when it holds nothing.

        The statement runs on the store's heartbeat pool, and on SQLite outside this process's
        writer turns: a big enqueue or a busy completer in the same process cannot hold it up
        (another process's write still makes it wait, up to SQLite's busy timeout). A retry
        stamps the time it runs.
        """
        params = {"id": worker_id, "stuck": int(stuck), "pool": pool, **self.dialect.beat_params(self.process_clock)}
        row = conn.execute(self.dialect.heartbeat, params).first()
        return None if row is None else int(row[0])

    @transaction(WRITE, retry=PATIENT)
    def mark_stopped(self, conn: sa.Connection, worker_id: str) -> None:
        """Mark a worker stopped; the row is deleted when no running job references it."""
        conn.execute(self.dialect.mark_stopped, {"id": worker_id})
        conn.execute(self.dialect.forget_stopped, {"id": worker_id})

    @transaction(READ, retry=BRIEF)
    def held_jobs(self, conn: sa.Connection, worker_id: str) -> list[HeldJob]:
        """Every job the database says this worker holds.

        The worker compares this with what it really runs: a job missing here was
        rescued from under it, a job only here was claimed by a reply that never arrived.
        """
        return [
            HeldJob(int(r.id), int(r.lease), None if r.cancel_requested is None else str(r.cancel_requested))
            for r in conn.execute(self.dialect.held_jobs, {"w": worker_id})
        ]

    @transaction(READ, retry=PATIENT)
    def lost_jobs(
        self,
        conn: sa.Connection,
        *,
        rescue_after: float,
        now: float,
        limit: int = 500,
        exclude_worker: str | None = None,
        observer: HeartbeatObserver | None = None,
        margin: float = 0.0,
    ) -> list[LostJob]:
        """The running jobs of lost workers, oldest first; what becomes of each is the caller's policy.

        A job is lost when its worker row is gone or stopped, its worker_id is NULL, or its worker's
        heartbeat is stale: on PostgreSQL (and on SQLite without an ``observer``) older than
        ``rescue_after`` by the database's clock; on SQLite with an ``observer``, unchanged for
        ``rescue_after`` of this process's own time (``margin``: how much earlier than that a
        worker surely silent may be judged lost; see :class:`~jobkit._store.liveness.HeartbeatObserver`).
        ``exclude_worker``'s own jobs are never returned (a worker's busy moment must not lose its
        live jobs). A damaged row is returned with its unreadable counters as 0, never raised on.
        """
        judge = self.dialect.observing(observer)
        observed = judge is not None
        sql = self.dialect.rescue_sql(observed=observed, exclude=exclude_worker is not None)
        params: dict[str, Any] = {"after": rescue_after, "limit": limit, "exclude": exclude_worker}
        if judge is None:
            found = [(r, None) for r in conn.execute(sql.candidates, params)]
        else:
            beats = [(str(r[0]), r[1]) for r in conn.execute(self.dialect.live_heartbeats)]
            stale = judge.stale(beats, rescue_after, margin)
            live = sorted({worker_id for worker_id, _ in beats} - set(stale))
            found = [(r, stale.get(r[1])) for r in conn.execute(sql.candidates, {**params, "live": live})]
        return [_lost(row, seen, observed=observed, rescue_after=rescue_after) for row, seen in found]

    def rescue_jobs(self, rescues: Sequence[Rescue], *, now: float) -> list[Rescued]:
        """Execute what the policy decided for lost jobs; what each became (a job that is no longer lost is left out).

        Each write re-checks the lease, the status and the worker's liveness as the job was judged
        lost, so a job that completed, or whose worker heartbeated since, is left alone. A pending
        cancel, kill, discard or pause request is honoured; each result's ``status`` says what the
        job became. All rescues go in one transaction; if that fails for a reason other than a
        transient one, each is written on its own, so one row that cannot be written never stops
        the others (and a row refused even then is failed with the reason alone).
        """
        if not rescues:
            return []
        for rescue in rescues:
            if rescue.kind not in (TransitionKind.RESCUE, TransitionKind.RESCUE_FAIL):
                raise ValueError(f"job {rescue.job.id}: a rescue writes rescue or rescue_fail, not {rescue.kind!r}")
        try:
            return self._rescue_all(rescues, now)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("rescue pass failed as a whole (%s); rescuing row by row", exc)
        rescued: list[Rescued] = []
        for rescue in rescues:
            planned, minimal = _write_params(rescue, now, self.bind_now(now))
            sql = self.dialect.rescue_sql(observed=rescue.job.observed, exclude=False)
            for statement, params in ((sql.updates[rescue.kind], planned), (sql.minimal, minimal)):
                try:
                    item = self._rescue_one(rescue, statement, params, now)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.error("job %s: cannot rescue it (%s)", rescue.job.id, exc)
                    continue
                if item is not None:
                    rescued.append(item)
                break
        return rescued

    @transaction(WRITE, retry=PATIENT)
    def _rescue_all(self, conn: sa.Connection, rescues: Sequence[Rescue], now: float) -> list[Rescued]:
        done = []
        for rescue in rescues:
            planned, _ = _write_params(rescue, now, self.bind_now(now))
            statement = self.dialect.rescue_sql(observed=rescue.job.observed, exclude=False).updates[rescue.kind]
            done.append(self._write_rescue(conn, rescue, statement, planned, now))
        return [item for item in done if item is not None]

    @transaction(WRITE, retry=PATIENT)
    def _rescue_one(
        self, conn: sa.Connection, rescue: Rescue, statement: sa.TextClause, params: dict[str, Any], now: float
    ) -> Rescued | None:
        return self._write_rescue(conn, rescue, statement, params, now)

    def _write_rescue(
        self, conn: sa.Connection, rescue: Rescue, statement: sa.TextClause, params: dict[str, Any], now: float
    ) -> Rescued | None:
        row = conn.execute(statement, params).first()
        if row is None:
            return None
        status = str(row.status)
        if status == JobState.FAILED and rescue.kind is TransitionKind.RESCUE:
            self.append_error(conn, rescue.job.id, discard_entry(now), now)  # a discard request
        return {
            "job_id": rescue.job.id,
            "status": status,
            "worker": rescue.job.worker,
            "crashes": rescue.job.crashes + 1,
        }

    @transaction(WRITE, retry=PATIENT)
    def prune(self, conn: sa.Connection, *, older_than: float, limit: int = 5000) -> int:
        """Delete terminal jobs finished before ``older_than`` and long-dead idle worker rows."""
        count = conn.execute(self.dialect.prune_jobs, {"before": older_than, "limit": limit}).rowcount
        conn.execute(self.dialect.prune_workers)
        # Rate-limit starts of windows no claim has read since they expired (claims clean their own).
        conn.execute(PRUNE_STARTS, {"before": older_than})
        return int(count or 0)

    @transaction(READ, retry=PATIENT)
    def list_workers(self, conn: sa.Connection, *, rescue_after: float) -> list[WorkerRecord]:
        """Every registered worker, with whether it is alive (by the database's clock) and its running jobs."""
        records = [worker_record(r) for r in conn.execute(self.dialect.list_workers, {"after": rescue_after})]
        by_id = {w.id: w for w in records}
        for worker_id, job_id in conn.execute(self.dialect.running_jobs):
            if worker_id in by_id:
                by_id[worker_id].running.append(int(job_id))
        return records

    @transaction(RAW, retry=BRIEF)
    def checkpoint_wal(self, engine: sa.Engine) -> bool:
        """Fold SQLite's write-ahead log into the database and truncate it to zero bytes.

        A reader that holds a snapshot open stops checkpoints from getting past it, so the WAL
        grows while it lasts; once it ends, this shrinks the file again. Returns whether the
        whole log was folded in (False while some reader still holds an old snapshot). A no-op
        on PostgreSQL (True).
        """
        return self.dialect.checkpoint(engine, self._write_lock)

"""The job write path: enqueue, claim, fenced transitions, batch completion and progress.

Writes on a running job are fenced: they match the job's lease ``(worker_id, lease)`` and
report whether they took, so a stale attempt can never change a row. The enqueue of one job,
the claim and batch completions run on a driver cursor (see :meth:`Database.hot`): they are
the hot path, benchmarked as W1 and W2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from jobkit._store.engine import BRIEF, HOT, HOT_ONE, PATIENT, WRITE, transaction
from jobkit._store.history import discard_entry, with_entry
from jobkit._store.keys_sql import SCAN_FACTOR
from jobkit._store.rates import Rates
from jobkit._store.records import ClaimedJob, Completion, ConcurrencyKey, NewJob, RateKey, Transition
from jobkit._store.statements import FAILS_ONLY_BY_DISCARD
from jobkit._vocabulary import JobState, TransitionKind

#: Rows the stager moves per claim at most: a wave of jobs falling due at once reaches the claim
#: index over a few claims instead of in one long write.
STAGE_BATCH = 1000


class Jobs(Rates):
    """Enqueue, claim, transitions, completion and progress."""

    def enqueue(
        self,
        rows: Sequence[NewJob],
        *,
        now: float,
        connection: sa.Connection | None = None,
        keys: Sequence[ConcurrencyKey] | None = None,
        rates: Sequence[RateKey] | None = None,
    ) -> list[int]:
        """Insert jobs (one multi-row insert per chunk) and wake workers; returns ids in order.

        With ``connection`` the rows join the caller's transaction and exist only if it commits.
        The wake-up (NOTIFY on PostgreSQL) is sent in the same transaction, so it fires at commit.
        ``keys``: each row's concurrency key, ``rates``: each row's rate-limit window, written in
        the same transaction as the rows.
        """
        if not rows:
            return []
        if keys is not None or rates is not None:
            if connection is not None:
                return self._insert_keyed(connection, rows, keys, now, rates)
            return self._insert_keyed_in_transaction(rows, keys, now, rates)
        if connection is not None:
            return self._insert(connection, rows, now)
        if len(rows) == 1:
            # One statement that inserts and notifies: in autocommit it is one round trip.
            return [self._insert_alone(rows[0], now)]
        return self._insert_in_transaction(rows, now)

    def _insert(self, conn: sa.Connection, rows: Sequence[NewJob], now: float) -> list[int]:
        if len(rows) == 1:
            statement, params = self._insert_one(rows[0], now)
            return [int(conn.execute(statement, params).scalar_one())]
        ids: list[int] = []
        for statement, params in self.dialect.insert_many(rows, now=now, server_clock=self.db_clock):
            # Ids are allocated ascending in row order within a statement, so sorting restores it.
            ids.extend(sorted(int(r[0]) for r in conn.execute(statement, params)))
        self.dialect.notify(conn, self.channel, _wake_payload(rows, now))
        return ids

    def _insert_keyed(
        self,
        conn: sa.Connection,
        rows: Sequence[NewJob],
        keys: Sequence[ConcurrencyKey] | None,
        now: float,
        rates: Sequence[RateKey] | None = None,
    ) -> list[int]:
        ids = self._insert(conn, rows, now)
        if keys is not None:
            self.set_keys(conn, ids, keys)
        if rates is not None:
            self.set_rates(conn, ids, rates)
        return ids

    def set_keys(self, conn: sa.Connection, ids: Sequence[int], keys: Sequence[ConcurrencyKey]) -> None:
        """Give new jobs their concurrency keys, in ``conn``'s transaction (before any claim can see them)."""
        params = [
            {"id": job_id, "key": key.key, "limit": key.limit, "extra": key.extra, "ordered": key.ordered or None}
            for job_id, key in zip(ids, keys, strict=True)
        ]
        if params:
            conn.execute(self.dialect.set_concurrency_key, params)

    @transaction(WRITE, retry=PATIENT)
    def _insert_keyed_in_transaction(
        self,
        conn: sa.Connection,
        rows: Sequence[NewJob],
        keys: Sequence[ConcurrencyKey] | None,
        now: float,
        rates: Sequence[RateKey] | None,
    ) -> list[int]:
        return self._insert_keyed(conn, rows, keys, now, rates)

    @transaction(WRITE, retry=PATIENT)
    def _insert_in_transaction(self, conn: sa.Connection, rows: Sequence[NewJob], now: float) -> list[int]:
        return self._insert(conn, rows, now)

    @transaction(HOT_ONE, retry=PATIENT)
    def _insert_alone(self, cursor: Any, row: NewJob, now: float) -> int:
        # Enqueues stay synchronous on PostgreSQL: the single-statement autocommit pool.
        statement, params = self._insert_one(row, now)
        cursor.execute(self.driver_text(statement), params)
        return int(cursor.fetchall()[0][0])

    def _insert_one(self, row: NewJob, now: float) -> tuple[sa.TextClause, dict[str, Any]]:
        return self.dialect.insert_one(
            row, now=now, channel=self.channel, payload=_wake_payload([row], now), server_clock=self.db_clock
        )

    def claim(
        self,
        *,
        worker: str,
        limit: int,
        names: Sequence[str],
        queues: Sequence[str] | None,
        now: float,
        keyed: Sequence[str] = (),
        limited: Sequence[str] = (),
        reschedule: Sequence[str] = (),
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs of the given types in one statement, in priority order.

        ``keyed`` names the types among them that have a concurrency key: their jobs are claimed
        first, by a statement of their own within each key's limit (the plain claim never takes a
        job with a key). Keyed jobs go first because their limits bound them already; claimed
        after the plain jobs, a steady stream of plain jobs could keep them waiting for ever.

        ``limited`` names the types with a rate limit: their jobs are claimed before the others,
        within each window and each concurrency key (rates.py), and never by the other claims.
        Those of the types in ``reschedule`` whose window is full move to their next slot.
        With no limited types nothing of this runs: plain claims pay nothing for rate limits.
        """
        if limit <= 0 or not names:
            return []
        jobs: list[ClaimedJob] = []
        if limited:
            jobs = self._claim_limited(worker, limit, limited, queues, now, reschedule)
            skip = set(limited)
            names = [n for n in names if n not in skip]
            keyed = [n for n in keyed if n not in skip]
            if not names:
                return jobs
        if keyed and len(jobs) < limit:
            jobs += self._claim_keyed(worker, limit - len(jobs), keyed, queues, now)
        if len(jobs) < limit:
            jobs += self._claim(worker, limit - len(jobs), names, queues, now)
        return sorted(jobs, key=lambda j: (j.priority, j.run_at, j.id)) if keyed or limited else jobs

    @transaction(WRITE, retry=PATIENT)
    def _claim_keyed(
        self,
        conn: sa.Connection,
        worker: str,
        limit: int,
        keyed: Sequence[str],
        queues: Sequence[str] | None,
        now: float,
    ) -> list[ClaimedJob]:
        lock = self.dialect.keyed_lock
        if lock is not None:
            conn.execute(lock)
        statement, params = self.dialect.claim_keyed(keyed, queues)
        params.update({"worker": worker, "limit": limit, "scan": limit * SCAN_FACTOR, "now": self.bind_now(now)})
        return [ClaimedJob.from_row(tuple(row), worker) for row in conn.execute(statement, params)]

    def key_holders(self, key: str) -> list[int]:
        """The running jobs that hold concurrency key ``key``, by id."""
        with self.read() as conn:
            return [int(r[0]) for r in conn.execute(self.dialect.key_holders, {"key": key})]

    @transaction(HOT, retry=PATIENT)
    def _claim(
        self, cursor: Any, worker: str, limit: int, names: Sequence[str], queues: Sequence[str] | None, now: float
    ) -> list[ClaimedJob]:
        bound_now = self.bind_now(now)
        statement, params = self.dialect.claim(names, queues)
        params.update({"worker": worker, "limit": limit, "now": bound_now, "stage_limit": STAGE_BATCH})
        # Stage first, so a job that fell due since the last claim is claimed by this one (where the
        # claim does not stage by itself); staging is a hint that needs no atomicity of its own.
        stage = self.dialect.stage_statement
        if stage is not None:
            cursor.execute(self.driver_text(stage), {"now": bound_now, "stage_limit": STAGE_BATCH})
        cursor.execute(self.driver_text(statement), params)
        rows = cursor.fetchall()
        jobs = (ClaimedJob.from_row(row, worker) for row in rows)
        return sorted(jobs, key=lambda j: (j.priority, j.run_at, j.id))

    def apply(self, transitions: Sequence[Transition], *, now: float) -> list[bool]:
        """Write many fenced transitions; returns, per transition, whether it took (see :meth:`apply_detailed`)."""
        return [state is not None for state in self.apply_detailed(transitions, now=now)]

    def transition(self, t: Transition, *, now: float) -> bool:
        """Write one fenced transition; returns whether its lease still matched."""
        return self.apply_detailed([t], now=now)[0] is not None

    def apply_detailed(self, transitions: Sequence[Transition], *, now: float) -> list[JobState | None]:
        """Write many fenced transitions; returns, per transition, the job's state after it (None: refused).

        The state tells what a write became when the operator had asked for something meanwhile:
        a retry, snooze, release or pause of a job whose cancel was requested ends ``cancelled``
        (``failed``, with a Discard entry, for a discard request), and a requeue of a job whose
        pause was requested ends ``paused``. Progress and checkpoint writes report ``running``.

        Progress and checkpoint writes are applied first, then completions, then the other
        kinds in the order given. Waiting handles in other processes are notified of every
        job that changed, in the same transaction (PostgreSQL). A batch made only of
        completions of distinct jobs by one worker is one statement (autocommit on
        PostgreSQL); anything else is one transaction.
        """
        if not transitions:
            return []
        workers = {t.worker for t in transitions}
        if (
            len(workers) == 1
            and all(t.kind is TransitionKind.COMPLETE for t in transitions)
            and len({t.job_id for t in transitions}) == len(transitions)
        ):
            done = self.complete(worker=workers.pop(), rows=[_completion(t) for t in transitions], now=now)
            return [JobState.COMPLETED if t.job_id in done else None for t in transitions]
        return self._apply(transitions, now)

    @transaction(WRITE, retry=PATIENT)
    def _apply(self, conn: sa.Connection, transitions: Sequence[Transition], now: float) -> list[JobState | None]:
        took: list[JobState | None] = [None] * len(transitions)
        # Progress and checkpoints never end a lease, so they go first: a job's last progress,
        # batched with its completion, must land before the completion ends the lease.
        for i, t in enumerate(transitions):
            if t.kind.keeps_lease:
                took[i] = self._fenced(conn, t, now)
        # Completions go in one statement per worker. The completion statement reports job ids, so
        # one call never carries the same job twice (say a stale and a current attempt of it): a
        # repeat goes to a later call, where only a lease that still matches can take.
        calls: dict[tuple[str, int], list[tuple[int, Transition]]] = {}
        repeats: dict[tuple[str, int], int] = {}
        for i, t in enumerate(transitions):
            if t.kind is TransitionKind.COMPLETE:
                nth = repeats.get((t.worker, t.job_id), 0)
                repeats[(t.worker, t.job_id)] = nth + 1
                calls.setdefault((t.worker, nth), []).append((i, t))
        for (worker, _), items in calls.items():
            rows = [_completion(t) for _, t in items]
            done = {
                int(r[0])
                for statement, params in self.dialect.complete_many(worker, self.bind_now(now), rows)
                for r in conn.execute(statement, params)
            }
            for i, t in items:
                took[i] = JobState.COMPLETED if t.job_id in done else None
        for i, t in enumerate(transitions):
            if not t.kind.keeps_lease and t.kind is not TransitionKind.COMPLETE:
                took[i] = self._fenced(conn, t, now)
        self.notify_jobs(conn, (t.job_id for t, state in zip(transitions, took, strict=True) if state is not None))
        return took

    @transaction(HOT, retry=PATIENT)
    def complete(self, cursor: Any, *, worker: str, rows: Sequence[Completion], now: float) -> set[int]:
        """Complete distinct jobs of one worker in one statement; returns the ids whose lease still held.

        Waiting handles in other processes are notified of those in the same statement (PostgreSQL).
        """
        done: set[int] = set()
        for statement, params in self.dialect.complete_many(worker, self.bind_now(now), rows, self.events_channel):
            cursor.execute(self.driver_text(statement), params)
            done.update(int(r[0]) for r in cursor.fetchall())
        return done

    def _fenced(self, conn: sa.Connection, t: Transition, now: float) -> JobState | None:
        params = {"id": t.job_id, "worker": t.worker, "lease": t.lease, **t.values, "now": self.bind_now(now)}
        if "run_at" in params and "delay" not in params:
            # A caller may give an absolute run time; the statements take a delay from the row's now.
            params["delay"] = float(params.pop("run_at")) - now
        row = conn.execute(self.dialect.fenced[t.kind], params).first()
        if row is None:
            return None
        state = JobState(row.status)
        if t.kind is TransitionKind.SNOOZE:
            # Snoozes do not count against a rate limit: the attempt gives its start back.
            self.refund_start(conn, t.job_id, t.lease)
        if state is JobState.FAILED and t.kind in FAILS_ONLY_BY_DISCARD:
            self.append_error(conn, t.job_id, discard_entry(now), now)
        return state

    def append_error(self, conn: sa.Connection, job_id: int, entry: dict[str, Any], now: float) -> None:
        """Append ``entry`` (its attempt filled in from the row) to a job's history, in ``conn``'s transaction."""
        row = conn.execute(self.dialect.read_history, {"id": job_id}).first()
        if row is None:
            return
        entry = {"attempt": int(row.attempt), **entry}
        params = {"id": job_id, "errors": with_entry(row.errors, entry), "now": self.bind_now(now)}
        conn.execute(self.dialect.write_history, params)

    # Retried briefly only: the reporter keeps the report and writes it again later.
    @transaction(WRITE, retry=BRIEF)
    def write_progress(
        self, conn: sa.Connection, job_id: int, *, worker: str, lease: int, progress: str, now: float
    ) -> bool:
        """Write a running job's progress, fenced by its lease, and notify waiters; returns whether the lease held."""
        params = {"id": job_id, "worker": worker, "lease": lease, "progress": progress, "now": now}
        took = conn.execute(self.dialect.progress, params).first() is not None
        if took:
            self.notify_jobs(conn, [job_id])
        return took


def _completion(t: Transition) -> Completion:
    return Completion(t.job_id, t.lease, t.values.get("result") or "null")


def _wake_payload(rows: Sequence[NewJob], now: float) -> str:
    """What an enqueue's wake-up carries: the earliest run time when it lies ahead, so listeners wake then."""
    earliest = min(row.run_at for row in rows)
    return repr(earliest) if earliest > now else ""

"""Unique enqueues: insert unless a live row holds the key, else act on that row (skip, replace, debounce).

Plain enqueues never come here, so their bulk insert stays as it is. A unique enqueue writes
row by row in one transaction (the caller's, with ``connection``): each row either takes its
key or finds the live row holding it, so duplicates against existing rows and within one call
are handled alike, and the answers come back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from jobkit._store.engine import PATIENT, WRITE, transaction
from jobkit._store.rates import Rates
from jobkit._store.records import Enqueued, UniqueJob
from jobkit._store.schema import STATE_BITS
from jobkit._vocabulary import JobState

#: How often one row may find its key's holder gone (it left its unique states between the insert
#: and the read) and insert again; each round means another transaction changed that row.
MAX_ROUNDS = 50


def states_mask(states: frozenset[str]) -> int:
    """The ``unique_states`` bit set of these state names."""
    return sum(STATE_BITS[JobState(state)] for state in states)


class Unique(Rates):
    """The unique enqueue path."""

    def enqueue_unique(
        self, rows: Sequence[UniqueJob], *, now: float, connection: sa.Connection | None = None
    ) -> list[Enqueued]:
        """Insert unique jobs, each unless a live job holds its key; per row, the id and whether it was a duplicate.

        With ``connection`` the writes join the caller's transaction: a rollback leaves nothing
        behind (the key was only ever held by the rolled-back row).
        """
        if not rows:
            return []
        if connection is not None:
            return self._unique(connection, rows, now)
        return self._unique_in_transaction(rows, now)

    @transaction(WRITE, retry=PATIENT)
    def _unique_in_transaction(self, conn: sa.Connection, rows: Sequence[UniqueJob], now: float) -> list[Enqueued]:
        return self._unique(conn, rows, now)

    def _unique(self, conn: sa.Connection, rows: Sequence[UniqueJob], now: float) -> list[Enqueued]:
        results = [self._one(conn, row, now) for row in rows]
        fresh = [row.job.run_at for row, result in zip(rows, results, strict=True) if not result.duplicate]
        if fresh:
            earliest = min(fresh)
            self.dialect.notify(conn, self.channel, repr(earliest) if earliest > now else "")
        return results

    def _one(self, conn: sa.Connection, row: UniqueJob, now: float) -> Enqueued:
        sql = self.dialect.unique
        job = row.job
        bound_now = self.bind_now(now)
        # Under the server's clock a job due now takes the server's time, as the plain insert does.
        run_at = None if bound_now is None and job.run_at <= now else job.run_at
        moved = {"run_at": run_at, "now": bound_now}
        params = {
            "name": job.name,
            "args": job.args,
            "queue": job.queue,
            "priority": job.priority,
            "max_retries": job.max_retries,
            "unique_key": row.key,
            "unique_states": states_mask(row.states),
            **moved,
        }
        for _ in range(MAX_ROUNDS):
            new_id = conn.execute(sql.insert, params).scalar()
            if new_id is not None:
                if row.concurrency is not None:
                    conn.execute(
                        self.dialect.set_concurrency_key,
                        {
                            "id": int(new_id),
                            "key": row.concurrency.key,
                            "limit": row.concurrency.limit,
                            "extra": row.concurrency.extra,
                            "ordered": row.concurrency.ordered or None,
                        },
                    )
                if row.rate is not None:
                    self.set_rates(conn, [int(new_id)], [row.rate])
                return Enqueued(int(new_id), False)
            holder = conn.execute(
                sql.find_live, {"unique_key": row.key, "window": row.window, "now": bound_now}
            ).first()
            if holder is None:
                continue  # the holder left its unique states since the insert looked: try again
            if holder.expired:
                conn.execute(sql.expire, {"id": holder.id, "now": bound_now})
                continue
            if holder.status == JobState.PENDING:
                if row.on_conflict == "replace":
                    conn.execute(sql.replace, {"id": holder.id, "args": job.args, "priority": job.priority, **moved})
                elif row.on_conflict == "debounce":
                    conn.execute(sql.debounce, {"id": holder.id, **moved})
            return Enqueued(int(holder.id), True)
        raise RuntimeError(f"{job.name}: unique key {row.key} kept changing hands; gave up after {MAX_ROUNDS} tries")

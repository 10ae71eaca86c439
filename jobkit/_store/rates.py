"""The gated claim (rate limits, several and ordered keys), window reads, ``consume`` (SQL in rates_sql.py).

Jobs of types with a rate limit, several concurrency keys or an ordered key are claimed here,
under one lock, by deciding in Python over what the transaction read: each key's running
holders (every key of a job counted), each ordered key's oldest unfinished job (only it may
start), and each rate-limit window's use.

A window is the sliding period behind now: its use is the sum of the weights of the starts
recorded in ``jobkit_rate_starts`` that have not expired (a start at ``t`` counts while
``now < t + period``, its ``expires_at``). Every start is recorded by the transaction that makes it, under a lock
that limited claims and consumes share (PostgreSQL: the keyed claims' advisory lock; SQLite:
its single writer), so no two processes can both take a window's last slot.

What counts: every claim of a limited job (a retry is a claim, so it counts; a rescued attempt
keeps its start), and every ``consume``. A snoozed attempt gives its start back.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from jobkit._store import rates_sql as sql
from jobkit._store.engine import PATIENT, READ, WRITE, Database, transaction
from jobkit._store.records import ClaimedJob, RateKey, RateWindow

#: Candidates read per limited claim: this many times the claim's limit (at least MIN_SCAN), so
#: jobs of a full window at the head do not hide the jobs of other windows behind them.
SCAN_FACTOR = 10
MIN_SCAN = 100


class Rates(Database):
    """The rate-limited claim and the windows' reads and writes."""

    def set_rates(self, conn: sa.Connection, ids: Sequence[int], rates: Sequence[RateKey]) -> None:
        """Give new jobs their rate-limit window and spec, in ``conn``'s transaction."""
        params = [
            {"id": job_id, "key": r.key, "limit": r.limit, "period": r.period, "weight": r.weight}
            for job_id, r in zip(ids, rates, strict=True)
        ]
        if params:
            conn.execute(sql.SET_RATE, params)

    def refund_start(self, conn: sa.Connection, job_id: int, lease: int) -> None:
        """Give back the start of one attempt (it snoozed), in ``conn``'s transaction."""
        conn.execute(sql.REFUND_START, {"id": job_id, "lease": lease})

    def _take_turn(self, conn: sa.Connection) -> float:
        """Wait for this transaction's turn among limited claims and consumes; the time it decides by."""
        lock = self.dialect.keyed_lock
        if lock is not None:
            conn.execute(lock)
        return -1.0 if not self.db_clock else float(conn.execute(self.dialect.select_now).scalar_one())

    @transaction(WRITE, retry=PATIENT)
    def _claim_limited(
        self,
        conn: sa.Connection,
        worker: str,
        limit: int,
        limited: Sequence[str],
        queues: Sequence[str] | None,
        now: float,
        reschedule: Sequence[str],
    ) -> list[ClaimedJob]:
        server_now = self._take_turn(conn)
        if server_now >= 0:
            now = server_now
        statement = sql.CANDIDATES_SOME if queues else sql.CANDIDATES_ALL
        params: dict[str, Any] = {"names": list(limited), "now": now, "scan": max(MIN_SCAN, limit * SCAN_FACTOR)}
        if queues:
            params["queues"] = list(queues)
        rows = conn.execute(statement, params).all()
        if not rows:
            return []
        used = self._window_use(conn, {r.rate_key for r in rows if r.rate_key is not None}, now)
        # The candidates' statement left out jobs of a full first key and ordered jobs whose turn
        # has not come; what is left is decided here, counting what this claim takes as it goes.
        gates = {r.id: row_keys(r.concurrency_key, r.concurrency_limit, r.concurrency_keys) for r in rows}
        held = {k: len(ids) for k, ids in self._holders(conn).items()} if any(gates.values()) else {}
        chosen: list[Any] = []
        later: list[Any] = []
        for row in rows:
            if len(chosen) >= limit:
                break
            keys = gates[row.id]
            if any(held.get(k, 0) >= n for k, n in keys):
                continue
            rkey, weight = row.rate_key, int(row.rate_weight or 1)
            if rkey is not None and used[rkey] + weight > int(row.rate_limit):
                if row.name in reschedule:
                    later.append(row)
                continue
            if rkey is not None:
                used[rkey] += weight
            for k, _ in keys:
                held[k] = held.get(k, 0) + 1
            chosen.append(row)
        claimed = (
            [
                ClaimedJob.from_row(tuple(r), worker)
                for r in conn.execute(sql.CLAIM_IDS, {"ids": [r.id for r in chosen], "worker": worker, "now": now})
            ]
            if chosen
            else []
        )
        by_id = {r.id: r for r in chosen}
        starts = [
            {
                "key": row.rate_key,
                "now": now,
                "expires": now + float(row.rate_period),
                "weight": int(row.rate_weight or 1),
                "job_id": j.id,
                "lease": j.lease,
            }
            for j in claimed
            if (row := by_id[j.id]).rate_key is not None
        ]
        if starts:
            conn.execute(sql.RECORD_START, starts)
            conn.execute(sql.FORGET_STARTS, [{"key": k, "now": now} for k in {s["key"] for s in starts}])
        # After this claim's own starts are recorded, so each next slot accounts for them.
        for row in later:
            rate = RateKey(row.rate_key, int(row.rate_limit), float(row.rate_period), int(row.rate_weight or 1))
            slot = self._window(conn, rate, now).next_slot
            conn.execute(sql.RESCHEDULE, {"id": row.id, "run_at": slot if slot > now else now, "now": now})
        return claimed

    def _holders(self, conn: sa.Connection) -> dict[str, list[int]]:
        """The running jobs holding each concurrency key, every key of a job with several counted."""
        holders: dict[str, list[int]] = defaultdict(list)
        for job_id, key, extra in conn.execute(sql.KEYED_RUNNING):
            for k, _ in row_keys(key, 1, extra):
                holders[k].append(int(job_id))
        return holders

    @transaction(READ, retry=PATIENT)
    def key_holders_all(self, conn: sa.Connection, keys: Sequence[str]) -> dict[str, list[int]]:
        """The running jobs holding each of ``keys``, by id (``why``)."""
        holders = self._holders(conn)
        return {k: holders.get(k, []) for k in keys}

    @transaction(READ, retry=PATIENT)
    def ordered_head(self, conn: sa.Connection, key: str) -> int | None:
        """The oldest unfinished job of an ordered key: the one that runs next (``why``)."""
        head = conn.execute(sql.ORDERED_HEAD, {"key": key}).scalar()
        return None if head is None else int(head)

    def _window_use(self, conn: sa.Connection, keys: Iterable[str], now: float) -> dict[str, int]:
        """Weighted starts not yet expired in each window."""
        used: dict[str, int] = defaultdict(int)
        wanted = sorted(keys)
        if wanted:
            for key, total in conn.execute(sql.WINDOW_USE, {"keys": wanted, "now": now}):
                used[key] = int(total)
        return used

    def _window(self, conn: sa.Connection, rate: RateKey, now: float) -> RateWindow:
        starts = [(float(t), int(w)) for t, w in conn.execute(sql.WINDOW_STARTS, {"key": rate.key, "now": now})]
        used = sum(w for _, w in starts)
        # The next start of ``weight`` fits once enough of the oldest starts have left the window.
        excess = used + rate.weight - rate.limit
        slot = now
        for expires, weight in starts:
            if excess <= 0:
                break
            excess -= weight
            slot = expires
        return RateWindow(used, slot)

    @transaction(READ, retry=PATIENT)
    def rate_window(self, conn: sa.Connection, rate: RateKey, *, now: float) -> RateWindow:
        """What ``rate``'s window holds at ``now`` (the database's clock under ``db_clock``)."""
        if self.db_clock:
            now = float(conn.execute(self.dialect.select_now).scalar_one())
        return self._window(conn, rate, now)

    @transaction(WRITE, retry=PATIENT)
    def consume_rate(self, conn: sa.Connection, rate: RateKey, *, now: float) -> bool:
        """Record a start of ``rate.weight`` in ``rate``'s window if it fits now; whether it did."""
        server_now = self._take_turn(conn)
        if server_now >= 0:
            now = server_now
        if self._window(conn, rate, now).next_slot > now:
            return False
        start = {"key": rate.key, "now": now, "expires": now + rate.period, "weight": rate.weight}
        conn.execute(sql.RECORD_START, {**start, "job_id": None, "lease": None})
        conn.execute(sql.FORGET_STARTS, {"key": rate.key, "now": now})
        return True


def row_keys(key: str | None, limit: int | None, extra: str | None) -> list[tuple[str, int]]:
    """A row's concurrency keys with their limits (``concurrency_keys`` when it has several)."""
    if extra:
        try:
            return [(str(k), int(n)) for k, n in json.loads(extra)]
        except (ValueError, TypeError):
            pass  # a damaged value: fall back to the first key, which the row always has
    return [] if key is None else [(key, int(limit or 1))]

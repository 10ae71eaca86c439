"""The gated claim's SQL, the same on both databases (every time is bound as ``:now``).

The gated claim takes the jobs of rate-limited types and of types with several or ordered
concurrency keys. It reads its candidates in claim order, the use of their windows, the holders
of their concurrency keys and the head of each ordered key, decides in Python which may start (rates.py), and claims exactly those
by id. It is exact because limited claims take turns: on PostgreSQL through the keyed claims'
advisory lock, taken first in the transaction; on SQLite BEGIN IMMEDIATE serialises every writer.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobkit._store.records import CLAIM_COLUMNS
from jobkit._store.schema import IS_ORDERED_UNFINISHED
from jobkit._store.statements import statement_text
from jobkit._vocabulary import JobState

PENDING, RUNNING = (f"'{s}'" for s in (JobState.PENDING, JobState.RUNNING))

_CANDIDATES = """
    SELECT c.id, c.name, c.rate_key, c.rate_limit, c.rate_period, c.rate_weight, c.concurrency_key,
           c.concurrency_limit, c.concurrency_keys
      FROM jobkit_jobs AS c
     WHERE c.status = {pending} AND c.run_at <= :now
       AND c.name IN :names
       {queue_filter}
       AND c.queue NOT IN (SELECT queue FROM jobkit_queue_pauses)
       -- Walk past jobs that cannot start whatever else this claim takes, so they never fill
       -- the scan: a full first key, or an ordered key with an earlier unfinished job.
       AND (c.concurrency_key IS NULL
            OR (SELECT COUNT(*) FROM jobkit_jobs AS r
                 WHERE r.status = {running} AND r.concurrency_key = c.concurrency_key) < c.concurrency_limit)
       AND (c.concurrency_ordered IS NULL
            OR NOT EXISTS (SELECT 1 FROM jobkit_jobs AS o
                            WHERE {ordered} AND o.concurrency_key = c.concurrency_key AND o.id < c.id))
     ORDER BY c.priority, c.run_at, c.id
     LIMIT :scan"""


def candidates(filter_queues: bool) -> sa.TextClause:
    """Due pending jobs of the limited types ``:names`` (in ``:queues``), best first, ``:scan`` at most."""
    queue_filter = "AND c.queue IN :queues" if filter_queues else ""
    ordered = IS_ORDERED_UNFINISHED.replace("concurrency_ordered", "o.concurrency_ordered").replace(
        "status", "o.status"
    )
    sql = _CANDIDATES.format(pending=PENDING, running=RUNNING, ordered=ordered, queue_filter=queue_filter)
    return statement_text(sql, "names", "queues") if filter_queues else statement_text(sql, "names")


CANDIDATES_ALL = candidates(False)
CANDIDATES_SOME = candidates(True)

#: Weighted starts not yet expired, for the windows ``:keys``.
WINDOW_USE = statement_text(
    "SELECT rate_key, SUM(weight) FROM jobkit_rate_starts "
    "WHERE rate_key IN :keys AND expires_at > :now GROUP BY rate_key",
    "keys",
)

#: One window's starts not yet expired, soonest to expire first: when the next start fits.
WINDOW_STARTS = sa.text(
    "SELECT expires_at, weight FROM jobkit_rate_starts WHERE rate_key = :key AND expires_at > :now ORDER BY expires_at"
)

#: Every running job with a concurrency key, and all its keys: who holds which key (several keys
#: per job are JSON, so they are counted here rather than in SQL; read along jobkit_jobs_keyed_running).
KEYED_RUNNING = sa.text(
    f"SELECT id, concurrency_key, concurrency_keys FROM jobkit_jobs "
    f"WHERE status = {RUNNING} AND concurrency_key IS NOT NULL ORDER BY id"
)

#: The oldest unfinished job of an ordered key (read along jobkit_jobs_ordered).
ORDERED_HEAD = sa.text(f"SELECT MIN(id) FROM jobkit_jobs WHERE {IS_ORDERED_UNFINISHED} AND concurrency_key = :key")

#: Lease the chosen jobs (``:ids``), as the other claims do; status re-checked.
CLAIM_IDS = statement_text(
    f"""
    UPDATE jobkit_jobs
       SET status = {RUNNING}, attempt = attempt + 1, lease = lease + 1, worker_id = :worker,
           started_at = :now, updated_at = :now, cancel_requested = NULL, staged = TRUE
     WHERE id IN :ids AND status = {PENDING}
    RETURNING {", ".join(CLAIM_COLUMNS)}
    """,
    "ids",
)

#: A start that counts against a window (a claim's, with its job and lease; a consume's, without).
RECORD_START = sa.text(
    "INSERT INTO jobkit_rate_starts (rate_key, started_at, expires_at, weight, job_id, lease) "
    "VALUES (:key, :now, :expires, :weight, :job_id, :lease)"
)

#: Starts that have left their window: nothing reads them again.
FORGET_STARTS = sa.text("DELETE FROM jobkit_rate_starts WHERE rate_key = :key AND expires_at <= :now")

#: The maintenance prune: starts long expired, of windows no claim has read since.
PRUNE_STARTS = sa.text("DELETE FROM jobkit_rate_starts WHERE expires_at < :before")

#: A snoozed attempt gives its start back (snoozes do not count).
REFUND_START = sa.text("DELETE FROM jobkit_rate_starts WHERE job_id = :id AND lease = :lease")

#: ``on_limit="reschedule"``: a job whose window is full moves to its next slot (scheduled, not staged).
RESCHEDULE = sa.text(
    f"UPDATE jobkit_jobs SET run_at = :run_at, staged = FALSE, updated_at = :now WHERE id = :id AND status = {PENDING}"
)

#: Give new jobs their rate-limit window and spec (in the enqueue's transaction).
SET_RATE = sa.text(
    "UPDATE jobkit_jobs SET rate_key = :key, rate_limit = :limit, rate_period = :period, rate_weight = :weight "
    "WHERE id = :id"
)

"""The heart of the keyed claim, the same on both databases: which keyed jobs may start now.

A job with a concurrency key may start while its rank within its key (in claim order) plus the
key's running jobs stays within its limit, so one claim never takes more of a key than the limit
leaves. The candidates are read along ``jobkit_jobs_keyed_pending`` in claim order, skipping jobs
whose key is full already, and only the first ``:scan`` of them are ranked: a claim costs a walk
of about that many rows, not a sort of every pending keyed job. A key with many jobs at the head
can fill that window and leave the claim short; its key is full at the next claim, so the walk
skips it then and reaches the others.
"""

from __future__ import annotations

from jobkit._vocabulary import JobState

PENDING, RUNNING = (f"'{s}'" for s in (JobState.PENDING, JobState.RUNNING))

#: Candidates ranked per claim: this many times the claim's limit.
SCAN_FACTOR = 10


def held(alias: str) -> str:
    """The running jobs holding the key of row ``alias`` (read along jobkit_jobs_keyed_running)."""
    return (
        f"(SELECT count(*) FROM jobkit_jobs AS r WHERE r.status = {RUNNING} "
        f"AND r.concurrency_key = {alias}.concurrency_key)"
    )


def keyed_candidates(now: str, filters: str) -> str:
    """A SELECT of the ids a keyed claim takes, best first, at most ``:limit``; ``filters`` use alias ``c``."""
    return f"""
        SELECT id FROM (
            SELECT w.id, w.priority, w.run_at, w.concurrency_limit, w.held,
                   ROW_NUMBER() OVER (PARTITION BY w.concurrency_key ORDER BY w.priority, w.run_at, w.id) AS rank
              FROM (SELECT c.id, c.priority, c.run_at, c.concurrency_key, c.concurrency_limit, {held("c")} AS held
                      FROM jobkit_jobs AS c
                     WHERE c.status = {PENDING} AND c.concurrency_key IS NOT NULL AND c.run_at <= {now}
                       {filters}
                       AND {held("c")} < c.concurrency_limit
                     ORDER BY c.priority, c.run_at, c.id
                     LIMIT :scan) AS w) AS ranked
         WHERE rank + held <= concurrency_limit
         ORDER BY priority, run_at, id
         LIMIT :limit"""

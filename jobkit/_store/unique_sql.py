"""The SQL of unique jobs, written the same on both databases from a dialect's clock and lock fragments.

The unique index (``jobkit_jobs_unique``, over :data:`~jobkit._store.schema.UNIQUE_LIVE`) does
the enforcing: an insert that would make a second live row with a key does nothing instead
(``ON CONFLICT DO NOTHING``, with no conflict target, since a partial index is the only unique
constraint a new row can meet). PostgreSQL makes that insert wait for a concurrent uncommitted
insert of the same key and then do nothing if it committed, so the follow-up read finds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from jobkit._store.schema import UNIQUE_LIVE
from jobkit._vocabulary import JobState

PENDING = f"'{JobState.PENDING}'"
#: A job's run time: the bound one, or the statement's now when none is bound (a due job under the
#: server's clock, as the plain insert does).
RUN_AT = "COALESCE(CAST(:run_at AS DOUBLE PRECISION), {now})"


#: A SET term for writes that bring a job back into its unique states from outside them (an operator's
#: resume or retry): when another live job holds its key meanwhile, the job gives its key up and runs
#: as a plain job, rather than the write failing on the unique index. (Unqualified names in the
#: sub-select are the holder's own columns.)
YIELD_KEY = (
    "unique_key = CASE WHEN unique_key IS NOT NULL AND EXISTS (SELECT 1 FROM jobkit_jobs AS holder "
    f"WHERE holder.unique_key = jobkit_jobs.unique_key AND holder.id <> jobkit_jobs.id AND {UNIQUE_LIVE}) "
    "THEN NULL ELSE unique_key END"
)


@dataclass(frozen=True, slots=True)
class UniqueStatements:
    """The statements of the unique enqueue path."""

    #: Insert one unique job unless a live row holds its key; returns the new id, or no row.
    insert: sa.TextClause
    #: The live row holding ``:unique_key`` (locked where writers run concurrently), and whether it is
    #: older than ``:window`` seconds (never, when ``:window`` is NULL).
    find_live: sa.TextClause
    #: Free a row's key: its unique_for window has passed, so a new job may take the key.
    expire: sa.TextClause
    #: on_conflict="replace": the pending holder takes the new call's args, priority and run time.
    replace: sa.TextClause
    #: on_conflict="debounce": the pending holder takes the new call's run time.
    debounce: sa.TextClause


def unique_statements(now: str, for_update: str) -> UniqueStatements:
    """The unique path's statements with ``now`` as the clock and ``for_update`` as the row lock."""
    run_at = RUN_AT.format(now=now)
    # A moved run time puts the row in the index it now belongs to (see the staged column).
    moved = f"run_at = {run_at}, staged = {run_at} <= {now}, updated_at = {now}"
    window = "CAST(:window AS DOUBLE PRECISION)"
    return UniqueStatements(
        insert=sa.text(
            "INSERT INTO jobkit_jobs (name, args, queue, priority, run_at, max_retries, unique_key, unique_states, "
            "status, staged, created_at) "
            f"VALUES (:name, :args, :queue, :priority, {run_at}, :max_retries, :unique_key, :unique_states, "
            f"{PENDING}, {run_at} <= {now}, {now}) "
            "ON CONFLICT DO NOTHING RETURNING id"
        ),
        find_live=sa.text(
            f"SELECT id, status, ({window} IS NOT NULL AND created_at + {window} <= {now}) AS expired "
            f"FROM jobkit_jobs WHERE unique_key = :unique_key AND {UNIQUE_LIVE}{for_update}"
        ),
        expire=sa.text(f"UPDATE jobkit_jobs SET unique_key = NULL, updated_at = {now} WHERE id = :id"),
        replace=sa.text(
            f"UPDATE jobkit_jobs SET args = :args, priority = :priority, {moved} "
            f"WHERE id = :id AND status = {PENDING} RETURNING id"
        ),
        debounce=sa.text(f"UPDATE jobkit_jobs SET {moved} WHERE id = :id AND status = {PENDING} RETURNING id"),
    )

"""The operators' tables: finished jobs per minute and queue, and the audit log of their actions.

Both are small and written off the hot path: workers add their counts every few seconds (one
upsert per minute and queue they saw), the dashboard one audit row per action.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa

from jobkit._store.engine import PATIENT, READ, WRITE, Database, transaction
from jobkit._store.records import AuditEntry, MinuteCount

#: Minutes of counts kept (a day and a little): the dashboard shows at most the last day.
KEEP_MINUTES = 25 * 60


class Insight(Database):
    """Per-minute counts of finished jobs, and the audit log."""

    @transaction(WRITE, retry=PATIENT)
    def add_minute_counts(self, conn: sa.Connection, counts: Sequence[MinuteCount]) -> None:
        """Add these counts to the stored ones (a minute and queue seen for the first time starts at them)."""
        if not counts:
            return
        conn.execute(self.dialect.tally_minute, [c._asdict() for c in counts])
        # Older minutes go with the writes that make new ones: no pruning service of its own.
        newest = max(c.minute for c in counts)
        conn.execute(self.dialect.prune_minutes, {"before": newest - KEEP_MINUTES * 60})

    @transaction(READ, retry=PATIENT)
    def minute_counts(self, conn: sa.Connection, *, since: float) -> list[MinuteCount]:
        """The stored counts from the minute holding ``since`` on, oldest first."""
        rows = conn.execute(self.dialect.minute_counts, {"since": int(since // 60 * 60)})
        return [MinuteCount(int(m), str(q), int(c), int(f)) for m, q, c, f in rows]

    @transaction(WRITE, retry=PATIENT)
    def record_audit(
        self,
        conn: sa.Connection,
        *,
        actor: str,
        action: str,
        target: str,
        job_ids: Sequence[int],
        outcome: str,
        now: float,
    ) -> None:
        """Append one operator action to the audit log."""
        conn.execute(
            self.dialect.insert_audit,
            {
                "at": now,
                "actor": actor,
                "action": action,
                "target": target,
                "job_ids": json.dumps(list(job_ids)),
                "outcome": outcome,
            },
        )

    @transaction(READ, retry=PATIENT)
    def audit_log(self, conn: sa.Connection, *, before: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries below id ``before``, newest first."""
        rows = conn.execute(self.dialect.audit_page[before is not None], {"before": before, "limit": limit})
        return [AuditEntry(**row._mapping) for row in rows]

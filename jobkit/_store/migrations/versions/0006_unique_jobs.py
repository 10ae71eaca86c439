"""Unique jobs: a unique key per job and the states in which it is held; concurrency keys; workers' job types.

``unique_key`` is a digest of a unique job's name, queue and chosen arguments (NULL for other
jobs); ``unique_states`` is the bit set of states in which the row keeps others with the same key
out. A partial unique index over the rows whose state is in their own set enforces it on both
databases, so concurrent inserts can never create two, and a job leaving those states frees its
key without any write of its own.

``concurrency_key`` and ``concurrency_limit`` bound how many jobs sharing a key run at once; two
partial indexes serve the keyed claim (pending candidates in claim order, running holders per key).

``jobkit_workers.names`` records the job types each worker runs, so ``handle.why()`` can tell a
job that no live worker would ever claim.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

# Written out rather than imported: a migration must keep creating what it created, whatever the
# schema module says later.
_STATE_BIT = (
    "CASE status WHEN 'pending' THEN 1 WHEN 'running' THEN 2 WHEN 'completed' THEN 4 "
    "WHEN 'failed' THEN 8 WHEN 'cancelled' THEN 16 WHEN 'paused' THEN 32 ELSE 0 END"
)
UNIQUE_LIVE = f"unique_key IS NOT NULL AND (unique_states & ({_STATE_BIT})) <> 0"


def upgrade() -> None:
    with op.batch_alter_table("jobkit_jobs") as batch:
        batch.add_column(sa.Column("unique_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("unique_states", sa.Integer, nullable=True))
        batch.add_column(sa.Column("concurrency_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("concurrency_limit", sa.Integer, nullable=True))
    keyed_pending = sa.text("status = 'pending' AND concurrency_key IS NOT NULL")
    op.create_index(
        "jobkit_jobs_keyed_pending",
        "jobkit_jobs",
        ["priority", "run_at", "id"],
        sqlite_where=keyed_pending,
        postgresql_where=keyed_pending,
    )
    keyed_running = sa.text("status = 'running' AND concurrency_key IS NOT NULL")
    op.create_index(
        "jobkit_jobs_keyed_running",
        "jobkit_jobs",
        ["concurrency_key"],
        sqlite_where=keyed_running,
        postgresql_where=keyed_running,
    )
    with op.batch_alter_table("jobkit_workers") as batch:
        batch.add_column(sa.Column("names", sa.Text, nullable=True))
    live = sa.text(UNIQUE_LIVE)
    op.create_index(
        "jobkit_jobs_unique", "jobkit_jobs", ["unique_key"], unique=True, sqlite_where=live, postgresql_where=live
    )


def downgrade() -> None:
    with op.batch_alter_table("jobkit_workers") as batch:
        batch.drop_column("names")
    op.drop_index("jobkit_jobs_unique", table_name="jobkit_jobs")
    op.drop_index("jobkit_jobs_keyed_running", table_name="jobkit_jobs")
    op.drop_index("jobkit_jobs_keyed_pending", table_name="jobkit_jobs")
    with op.batch_alter_table("jobkit_jobs") as batch:
        batch.drop_column("concurrency_limit")
        batch.drop_column("concurrency_key")
        batch.drop_column("unique_states")
        batch.drop_column("unique_key")

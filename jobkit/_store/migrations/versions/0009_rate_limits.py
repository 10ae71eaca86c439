"""Rate limits, several and ordered concurrency keys.

``concurrency_keys`` holds every key of a job with several keys (JSON); ``concurrency_ordered``
marks jobs of an ordered key, and a partial index over their unfinished rows finds each ordered
key's oldest job.

``rate_key`` names the sliding window a start of the job counts in; ``rate_limit`` (weighted
starts), ``rate_period`` (seconds) and ``rate_weight`` are the spec it was enqueued under.
``jobkit_rate_starts`` holds one row per start (a claim, or ``limits.consume``): a window's use
is the sum of the weights of its starts not yet expired (``expires_at``: start + period).

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Epoch = sa.Float(precision=53)
JobId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Written out rather than imported: a migration must keep creating what it created.
ORDERED_UNFINISHED = "concurrency_ordered AND status IN ('pending', 'running', 'paused')"


def upgrade() -> None:
    with op.batch_alter_table("jobkit_jobs") as batch:
        batch.add_column(sa.Column("concurrency_keys", sa.Text, nullable=True))
        batch.add_column(sa.Column("concurrency_ordered", sa.Boolean(create_constraint=False), nullable=True))
        batch.add_column(sa.Column("rate_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("rate_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("rate_period", Epoch, nullable=True))
        batch.add_column(sa.Column("rate_weight", sa.Integer, nullable=True))
    ordered = sa.text(ORDERED_UNFINISHED)
    op.create_index(
        "jobkit_jobs_ordered",
        "jobkit_jobs",
        ["concurrency_key", "id"],
        sqlite_where=ordered,
        postgresql_where=ordered,
    )
    op.create_table(
        "jobkit_rate_starts",
        sa.Column("id", JobId, primary_key=True, autoincrement=True),
        sa.Column("rate_key", sa.String(200), nullable=False),
        sa.Column("started_at", Epoch, nullable=False),
        sa.Column("expires_at", Epoch, nullable=False),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("job_id", JobId, nullable=True),
        sa.Column("lease", sa.Integer, nullable=True),
    )
    op.create_index("jobkit_rate_starts_window", "jobkit_rate_starts", ["rate_key", "expires_at"])
    op.create_index("jobkit_rate_starts_expiry", "jobkit_rate_starts", ["expires_at"])
    op.create_index("jobkit_rate_starts_job", "jobkit_rate_starts", ["job_id"])


def downgrade() -> None:
    op.drop_table("jobkit_rate_starts")
    op.drop_index("jobkit_jobs_ordered", table_name="jobkit_jobs")
    with op.batch_alter_table("jobkit_jobs") as batch:
        batch.drop_column("rate_weight")
        batch.drop_column("rate_period")
        batch.drop_column("rate_limit")
        batch.drop_column("rate_key")
        batch.drop_column("concurrency_ordered")
        batch.drop_column("concurrency_keys")

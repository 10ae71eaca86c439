"""jobkit's initial schema: jobs, workers and queue pauses.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Epoch = sa.Float(precision=53)
JobId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobkit_jobs",
        sa.Column("id", JobId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("run_at", Epoch, nullable=False),
        sa.Column("created_at", Epoch, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("started_at", Epoch, nullable=True),
        sa.Column("finished_at", Epoch, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("errors", sa.Text, nullable=True),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("checkpoint", sa.Text, nullable=True),
        sa.Column("cancel_requested", sa.String(16), nullable=True),
        sa.Column("crashes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", Epoch, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "jobkit_jobs_claim",
        "jobkit_jobs",
        ["priority", "run_at", "id"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "jobkit_jobs_running",
        "jobkit_jobs",
        ["worker_id"],
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index("jobkit_jobs_status_finished", "jobkit_jobs", ["status", "finished_at"])
    op.create_index("jobkit_jobs_name_status", "jobkit_jobs", ["name", "status"])
    op.create_table(
        "jobkit_workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", sa.Text, nullable=True),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("started_at", Epoch, nullable=False),
        sa.Column("heartbeat_at", Epoch, nullable=False),
        sa.Column("stopped_at", Epoch, nullable=True),
    )
    op.create_table(
        "jobkit_queue_pauses",
        sa.Column("queue", sa.String(100), primary_key=True),
        sa.Column("paused_at", Epoch, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("jobkit_queue_pauses")
    op.drop_table("jobkit_workers")
    op.drop_table("jobkit_jobs")

"""Recurring jobs: schedules and their fires.

``jobkit_schedules`` holds every schedule (declared in code or at run time) with its policies and
``last_fire_at``; ``jobkit_cron_fires`` holds one row per decided fire time, its primary key
(schedule key, fire time) making each fire happen once across every scheduler.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Epoch = sa.Float(precision=53)
JobId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobkit_schedules",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("queue", sa.String(100), nullable=True),
        sa.Column("catchup", sa.String(16), nullable=False, server_default="latest"),
        sa.Column("catchup_window", Epoch, nullable=True),
        sa.Column("overlap", sa.String(16), nullable=False, server_default="allow"),
        sa.Column("paused", sa.Boolean(create_constraint=False), nullable=False, server_default=sa.false()),
        sa.Column("source", sa.String(16), nullable=False, server_default="code"),
        sa.Column("created_at", Epoch, nullable=False),
        sa.Column("updated_at", Epoch, nullable=False),
        sa.Column("last_fire_at", Epoch, nullable=True),
        sa.Column("last_job_id", JobId, nullable=True),
        sa.Column("missed", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "jobkit_cron_fires",
        sa.Column("schedule_key", sa.String(200), primary_key=True),
        sa.Column("fire_at", Epoch, primary_key=True),
        sa.Column("job_id", JobId, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("created_at", Epoch, nullable=False),
    )
    op.create_index("jobkit_cron_fires_created", "jobkit_cron_fires", ["created_at"])


def downgrade() -> None:
    op.drop_index("jobkit_cron_fires_created", table_name="jobkit_cron_fires")
    op.drop_table("jobkit_cron_fires")
    op.drop_table("jobkit_schedules")

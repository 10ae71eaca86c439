"""The dashboard's tables: finished jobs per minute and queue, and the operators' audit log.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Epoch = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "jobkit_minute_stats",
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("queue", sa.String(100), primary_key=True),
        sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "jobkit_audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", Epoch, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text, nullable=False, server_default=""),
        sa.Column("job_ids", sa.Text, nullable=False, server_default="[]"),
        sa.Column("outcome", sa.Text, nullable=False, server_default=""),
        sqlite_autoincrement=True,
    )
    op.create_index("jobkit_audit_log_at", "jobkit_audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("jobkit_audit_log_at", table_name="jobkit_audit_log")
    op.drop_table("jobkit_audit_log")
    op.drop_table("jobkit_minute_stats")

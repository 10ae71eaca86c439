"""Make the status and name indexes cover finished jobs only.

Both indexes also covered pending rows, so a planner with stale statistics could
claim through them (read every pending row of a type, then sort) instead of the
claim index that returns rows already in priority order. Restricted to finished
rows they still serve pruning and the admin actions, and cannot compete with it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FINISHED = sa.text("status IN ('completed', 'failed', 'cancelled')")


def upgrade() -> None:
    op.drop_index("jobkit_jobs_status_finished", table_name="jobkit_jobs")
    op.drop_index("jobkit_jobs_name_status", table_name="jobkit_jobs")
    op.create_index(
        "jobkit_jobs_finished",
        "jobkit_jobs",
        ["status", "finished_at"],
        sqlite_where=FINISHED,
        postgresql_where=FINISHED,
    )
    op.create_index(
        "jobkit_jobs_name_finished",
        "jobkit_jobs",
        ["name", "status"],
        sqlite_where=FINISHED,
        postgresql_where=FINISHED,
    )


def downgrade() -> None:
    op.drop_index("jobkit_jobs_name_finished", table_name="jobkit_jobs")
    op.drop_index("jobkit_jobs_finished", table_name="jobkit_jobs")
    op.create_index("jobkit_jobs_status_finished", "jobkit_jobs", ["status", "finished_at"])
    op.create_index("jobkit_jobs_name_status", "jobkit_jobs", ["name", "status"])

"""Alembic environment: runs on the connection jobkit hands over, never on alembic.ini."""

from __future__ import annotations

from alembic import context

from jobkit._store.schema import metadata

VERSION_TABLE = "jobkit_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()

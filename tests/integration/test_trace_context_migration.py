"""Migration 0010 adds exactly schema.py's trace_context column, and goes down and up again."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from jobkit._store import open_store, schema
from jobkit._store.store import MIGRATIONS


def columns(engine: sa.Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("jobkit_jobs")}


def test_migration_0010_matches_the_schema_and_goes_down_and_up(db_url: str) -> None:
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert [d for d in differences if "trace_context" in str(d)] == []
        assert "trace_context" in columns(store.engine)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0009")
        assert "trace_context" not in columns(store.engine)
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        assert "trace_context" in columns(store.engine)
    finally:
        store.close()

"""Migration 0007 creates exactly the dashboard's tables of schema.py, and goes down and up again."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from jobkit._store import open_store, schema
from jobkit._store.store import MIGRATIONS

DASHBOARD_TABLES = {"jobkit_minute_stats", "jobkit_audit_log"}


def test_the_migrated_dashboard_tables_match_the_schema(db_url: str) -> None:
    """Comparing the migrated database with schema.py finds no difference in the dashboard's tables."""
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert [d for d in differences if any(t in str(d) for t in DASHBOARD_TABLES)] == []
        assert set(sa.inspect(store.engine).get_table_names()) >= DASHBOARD_TABLES
    finally:
        store.close()


def test_migration_0011_downgrades_and_upgrades(db_url: str) -> None:
    """Down to 0010 (the revision before it) drops the dashboard's tables; up again recreates them."""
    store = open_store(db_url)
    engine = store.engine
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")
        assert not DASHBOARD_TABLES & set(sa.inspect(engine).get_table_names())
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        assert set(sa.inspect(engine).get_table_names()) >= DASHBOARD_TABLES
    finally:
        store.close()

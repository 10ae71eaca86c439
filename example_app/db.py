"""The newsletter's own tables, in the same database as jobkit's (so enqueue can join our transactions)."""

from __future__ import annotations

import os
from functools import cache

import sqlalchemy as sa

metadata = sa.MetaData()

subscribers = sa.Table(
    "newsletter_subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
)

outbox = sa.Table(
    "newsletter_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("to", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)


def database_url() -> str:
    """The database the app and jobkit share (JOBKIT_DATABASE_URL, SQLite by default)."""
    return os.environ.get("JOBKIT_DATABASE_URL", "sqlite:///example_app.sqlite3")


@cache
def engine() -> sa.Engine:
    """The app's engine, tables created on first use."""
    eng = sa.create_engine(database_url())
    metadata.create_all(eng)
    return eng

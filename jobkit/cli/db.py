"""``jobkit db``: the schema commands."""

from __future__ import annotations

import click

from jobkit._queue import JobQueue
from jobkit.cli.context import command_settings, preflight


@click.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or upgrade jobkit's tables to the newest migration."""
    settings = command_settings(database_url=ctx.obj.get("database_url"), auto_migrate=False)
    preflight(settings, require_schema=False)
    queue = JobQueue(settings)
    queue.store.migrate()
    click.echo("jobkit schema is up to date")

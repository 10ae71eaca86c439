"""What every command stands on: settings, the database preflight and its exit statuses, the queue.

A command reaches the database through :func:`queue_of` (one queue per invocation, opened
after a quick preflight) and fails through :func:`fatal` with one line and a documented exit
status; :func:`load_apps` imports the modules that declare jobs.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, NoReturn

import click

from jobkit._queue import JobQueue
from jobkit._settings import Settings, load_settings
from jobkit._store import check_database
from jobkit.errors import ConfigurationError, DatabaseUnavailable, SchemaMissing

#: Exit statuses of ``jobkit worker`` and of every command that needs the database.
EXIT_OK = 0
EXIT_SCHEMA_MISSING = 2
EXIT_UNAVAILABLE = 3
EXIT_STUCK = 4


def fatal(message: str, exit_code: int) -> NoReturn:
    """End the command with one ``jobkit: ...`` line on stderr and ``exit_code`` (no traceback)."""
    click.echo(f"jobkit: {message}", err=True)
    raise click.exceptions.Exit(exit_code)


def preflight(settings: Settings, *, require_schema: bool | None = None) -> None:
    """Reach the database once, quickly, before anything retries: one line and exit 3 or 2 if that fails.

    ``require_schema`` defaults to "auto-migration is off": with it on, missing tables are created.
    """
    required = not settings.auto_migrate if require_schema is None else require_schema
    try:
        check_database(settings.database_url, require_schema=required)
    except SchemaMissing as exc:
        fatal(str(exc), EXIT_SCHEMA_MISSING)
    except DatabaseUnavailable as exc:
        fatal(str(exc), EXIT_UNAVAILABLE)


def command_settings(**given: Any) -> Settings:
    """Settings from the given options over ``JOBKIT_*`` variables; an invalid one is a usage error."""
    try:
        return load_settings(**given)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def open_queue(settings: Settings) -> JobQueue:
    """A queue on ``settings``' database, after a preflight that ends the command if it cannot be reached."""
    preflight(settings)
    return JobQueue(settings)


def queue_of(ctx: click.Context) -> JobQueue:
    """The queue the command works on: opened on first use, once per invocation."""
    obj = ctx.ensure_object(dict)
    if "queue" not in obj:
        obj["queue"] = open_queue(command_settings(database_url=obj.get("database_url")))
    queue: JobQueue = obj["queue"]
    return queue


def load_apps(modules: tuple[str, ...]) -> None:
    """Import the modules that declare jobs, and every ``jobkit.plugins`` entry point."""
    for module in modules:
        for name in module.split(","):
            if name.strip():
                importlib.import_module(name.strip())
    for plugin in entry_points(group="jobkit.plugins"):
        try:
            plugin.load()
        except Exception as exc:
            click.echo(f"warning: plugin {plugin.name!r} failed to load: {exc}", err=True)

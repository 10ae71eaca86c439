"""The ``jobkit`` command: thin commands over :class:`jobkit.JobQueue`.

The top-level group lives here; each command or command group lives in the module named for
it (``worker``, ``jobs``, ``queues``, ``db``, ``overview``), over ``context`` (settings, the
database preflight, exit statuses) and ``output`` (literal rendering of stored text).
"""

from __future__ import annotations

import logging

import click

from jobkit.cli.context import (
    EXIT_OK,
    EXIT_SCHEMA_MISSING,
    EXIT_STUCK,
    EXIT_UNAVAILABLE,
    fatal,
    load_apps,
    preflight,
)
from jobkit.cli.dashboard import dashboard_command
from jobkit.cli.db import db_group
from jobkit.cli.jobs import jobs_group
from jobkit.cli.output import cell, console
from jobkit.cli.overview import stats, types, workers
from jobkit.cli.queues import queues_group
from jobkit.cli.worker import StopRequested, off_main_thread, stop_on_signal, worker_command

__all__ = [
    "EXIT_OK",
    "EXIT_SCHEMA_MISSING",
    "EXIT_STUCK",
    "EXIT_UNAVAILABLE",
    "StopRequested",
    "cell",
    "console",
    "fatal",
    "load_apps",
    "main",
    "off_main_thread",
    "preflight",
    "stop_on_signal",
]


@click.group()
@click.option("--database-url", envvar="JOBKIT_DATABASE_URL", help="Database URL (default sqlite:///jobkit.sqlite3).")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO.")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, verbose: bool) -> None:
    """jobkit: declarative background jobs on SQLite and PostgreSQL."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict)["database_url"] = database_url


for command in (worker_command, dashboard_command, db_group, workers, stats, types, jobs_group, queues_group):
    main.add_command(command)

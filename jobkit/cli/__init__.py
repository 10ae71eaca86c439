"""The ``jobkit`` command: thin commands over :class:`jobkit.JobQueue`.

The top-level group lives here; each command or command group lives in the module named for
it (``worker``, ``jobs``, ``queues``, ``cron``, ``db``, ``overview``), over ``context`` (settings, the
database preflight, exit statuses) and ``output`` (literal rendering of stored text).
"""

from __future__ import annotations

import logging

import click

from jobkit import __version__
from jobkit.cli.context import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SCHEMA_MISSING,
    EXIT_STUCK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FriendlyGroup,
    fatal,
    load_apps,
    preflight,
)
from jobkit.cli.cron import cron_group
from jobkit.cli.dashboard import dashboard_command
from jobkit.cli.db import db_group
from jobkit.cli.enqueue import enqueue_command
from jobkit.cli.health import health_command
from jobkit.cli.jobs import jobs_group
from jobkit.cli.output import cell, console
from jobkit.cli.overview import stats, types, workers
from jobkit.cli.queues import queues_group
from jobkit.cli.worker import StopRequested, off_main_thread, stop_on_signal, worker_command

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SCHEMA_MISSING",
    "EXIT_STUCK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
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


@click.group(cls=FriendlyGroup)
@click.version_option(__version__, "--version", prog_name="jobkit", message="%(prog)s %(version)s")
@click.option(
    "--database-url",
    envvar="JOBKIT_DATABASE_URL",
    help="Database URL (env JOBKIT_DATABASE_URL; default sqlite:///jobkit.sqlite3, relative to the working directory).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO; show the traceback of a failure.")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, verbose: bool) -> None:
    """jobkit: declarative background jobs on SQLite and PostgreSQL.

    Exit status: 0 done; 1 the job failed or the action was refused; 2 usage (a bad option,
    argument, URL or --app; also jobkit's tables missing); 3 the database cannot be reached;
    4 a worker stopped on too many stuck threads.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict).update(database_url=database_url, verbose=verbose)


for command in (
    worker_command,
    dashboard_command,
    db_group,
    workers,
    stats,
    types,
    jobs_group,
    queues_group,
    cron_group,
    enqueue_command,
    health_command,
):
    main.add_command(command)

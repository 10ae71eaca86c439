"""What every command stands on: settings, the database preflight and its exit statuses, the queue.

A command reaches the database through :func:`queue_of` (one queue per invocation, opened
after a quick preflight) and fails through :func:`fatal` with one line and a documented exit
status; :func:`load_apps` imports the modules that declare jobs.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from jobkit._plugins import load_plugins
from jobkit._queue import JobQueue
from jobkit._settings import Settings, load_settings
from jobkit._store import check_database
from jobkit.errors import ConfigurationError, DatabaseUnavailable, SchemaMissing

#: Exit statuses of every command (docs/cli.md lists them): 0 done; 1 the job failed or the action
#: was refused; 2 a usage error (a bad option, argument, URL or ``--app``, or jobkit's tables are
#: missing); 3 the database cannot be reached; 4 a worker stopped on too many stuck threads.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
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


def verbose() -> bool:
    """Whether ``jobkit -v`` was given: then a failure shows its traceback too."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().ensure_object(dict).get("verbose"))


def command_settings(**given: Any) -> Settings:
    """Settings from the given options over ``JOBKIT_*`` variables; an invalid one is a usage error (exit 2)."""
    try:
        return load_settings(**given)
    except ConfigurationError as exc:
        if verbose():
            traceback.print_exc()
        fatal(f"{exc}", EXIT_USAGE)


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
    """Import the modules that declare jobs, and every ``jobkit.plugins`` entry point.

    A module that cannot be imported ends the command with one line naming it and the fix
    (exit 2); ``jobkit -v`` adds the traceback.
    """
    # The working directory first, as `python -m` has it: `--app myapp.jobs` run from the project.
    if "" not in sys.path:
        sys.path.insert(0, "")
    for module in modules:
        for name in module.split(","):
            if name.strip():
                _import_app(name.strip())
    load_plugins(warn=lambda message: click.echo(f"jobkit: warning: {message}", err=True))


def _import_app(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if verbose():
            traceback.print_exc()
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            fatal(
                f"cannot import --app {name}: no module named {exc.name!r} "
                f"(run from your project's directory or add it to PYTHONPATH; the working directory is {Path.cwd()})",
                EXIT_USAGE,
            )
        fatal(f"cannot import --app {name}: it imports {exc.name!r}, which is not installed", EXIT_USAGE)
    except Exception as exc:
        if verbose():
            traceback.print_exc()
        where = _raised_in(exc)
        fatal(
            f"cannot import --app {name}: {type(exc).__name__}: {one_line(exc)}{where} (jobkit -v shows the traceback)",
            EXIT_USAGE,
        )


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (pydantic's and libpq's span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _raised_in(exc: BaseException) -> str:
    """`` at FILE:LINE`` of the innermost frame of ``exc``, for a one-line report."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {exc.filename}:{exc.lineno}"
    return "" if tb is None else f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class FriendlyGroup(click.Group):
    """The top-level group: a failure no command expected is one line on stderr, its traceback only with ``-v``.

    Click's own exits (usage errors, :func:`fatal`) pass through unchanged; a database that
    became unreachable mid-command exits 3, anything else 1.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning an unexpected exception into one ``jobkit: ...`` line."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.ensure_object(dict).get("verbose"):
                traceback.print_exc()
            code = EXIT_UNAVAILABLE if isinstance(exc, DatabaseUnavailable) else EXIT_FAILED
            hint = "" if ctx.obj.get("verbose") else " (jobkit -v shows the traceback)"
            fatal(f"{type(exc).__name__}: {one_line(exc)}{hint}", code)

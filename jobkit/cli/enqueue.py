"""``jobkit enqueue NAME --args JSON``: enqueue from the shell, validated as ``perform_later`` validates."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from jobkit._payload import validation_problems
from jobkit._registry import lookup
from jobkit.cli.context import EXIT_USAGE, fatal, load_apps, queue_of
from jobkit.cli.output import echo_json
from jobkit.errors import EnqueueError


def _args(_ctx: click.Context, _param: click.Parameter, value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"must be a JSON object of arguments, got {type(parsed).__name__}: {value}")
    return parsed


def _run_at(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as 2030-01-01T09:00:00+00:00") from None
    if when.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no timezone: add one, e.g. {value}+00:00 or {value}Z")
    return when


@click.command("enqueue")
@click.argument("name")
@click.option("--args", "args", default="{}", callback=_args, help="The job's arguments as a JSON object.")
@click.option("--app", "apps", multiple=True, help="Module(s) that declare your jobs (plugins load by themselves).")
@click.option("--queue", "queue_name", default=None, help="Queue to use instead of the job type's.")
@click.option("--priority", type=int, default=None, help="Priority instead of the job type's (lower runs first).")
@click.option("--run-at", default=None, callback=_run_at, help="Run at this ISO 8601 time with a timezone.")
@click.option("--json", "as_json", is_flag=True, help="Print the new job as JSON.")
@click.pass_context
def enqueue_command(
    ctx: click.Context,
    name: str,
    args: dict[str, Any],
    apps: tuple[str, ...],
    queue_name: str | None,
    priority: int | None,
    run_at: datetime | None,
    as_json: bool,
) -> None:
    """Enqueue one job of type NAME and print its id (exit 2 if the arguments are invalid).

    The type must be imported (--app) so that its schema validates the arguments, as
    perform_later does: nothing unchecked reaches the database.

        jobkit enqueue send_email --app myapp.jobs --args '{"to": "a@b.c", "subject": "hi"}'
    """
    load_apps(apps)
    if lookup(name) is None:
        hint = "pass --app with the module that declares it" if not apps else "the --app modules do not declare it"
        fatal(f"no job type named {name!r} is registered: {hint}", EXIT_USAGE)
    queue = queue_of(ctx)
    try:
        handle = queue.enqueue(name, args, queue=queue_name, priority=priority, wait_until=run_at)
    except EnqueueError as exc:
        fatal(str(exc), EXIT_USAGE)
    except ValueError as exc:  # pydantic's ValidationError: the schema refused the arguments
        fatal(f"{name}: {validation_problems(exc) or exc}", EXIT_USAGE)
    info = queue.job_info(handle.id)
    if as_json:
        echo_json({"id": handle.id, "name": name, "queue": None if info is None else info.queue, "status": "pending"})
        return
    click.echo(f"enqueued job {handle.id} ({name}, queue {info.queue if info else queue_name})")

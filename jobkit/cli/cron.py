"""``jobkit cron``: list stored schedules, fire one now, pause and resume one, for every worker."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.table import Table

from jobkit._clock import to_datetime
from jobkit.cli.context import load_apps, queue_of
from jobkit.cli.output import cell, console, fmt_time

TIMES = ("next_fire_at", "last_fire_at")


@click.group("cron")
@click.option(
    "--app",
    "apps",
    multiple=True,
    help="Module(s) that declare jobs with cron=...: their schedules are stored (upserted) first.",
)
def cron_group(apps: tuple[str, ...]) -> None:
    """Recurring jobs: every worker fires stored schedules, each fire time once."""
    if apps:
        sys.path.insert(0, "")
        load_apps(apps)


@cron_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of schedules (times in ISO 8601, UTC).")
@click.pass_context
def cron_list(ctx: click.Context, as_json: bool) -> None:
    """Show each schedule: next fire, last fire, the last job's state and how many fires were missed."""
    rows = queue_of(ctx).schedules()
    if as_json:
        click.echo(json.dumps([_json_row(row) for row in rows], indent=2))
        return
    table = Table("key", "job", "cron", "timezone", "next fire (UTC)", "last fire (UTC)", "last job", "missed")
    for row in rows:
        last_job = "-" if row["last_job_id"] is None else f"{row['last_job_id']} {row['last_job_status'] or 'gone'}"
        table.add_row(
            cell(row["key"]),
            cell(row["name"]),
            cell(row["cron"]),
            cell(row["timezone"]),
            cell("paused" if row["paused"] else fmt_time(row["next_fire_at"])),
            cell(fmt_time(row["last_fire_at"])),
            cell(last_job),
            cell(row["missed"]),
        )
    console.print(table)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    shown = dict(row)
    for name in TIMES:
        when = to_datetime(row[name])
        shown[name] = None if when is None else when.isoformat()
    return shown


@cron_group.command("run")
@click.argument("key")
@click.pass_context
def cron_run(ctx: click.Context, key: str) -> None:
    """Enqueue the job of schedule KEY now, outside its timetable."""
    try:
        handle = queue_of(ctx).run_schedule(key)
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    click.echo(f"schedule {key}: enqueued job {handle.id}")


@cron_group.command("pause")
@click.argument("key")
@click.pass_context
def cron_pause(ctx: click.Context, key: str) -> None:
    """Stop schedule KEY firing on every worker until it is resumed (missed fires are skipped)."""
    if not queue_of(ctx).pause_schedule(key):
        raise click.ClickException(f"no schedule with key {key!r}")
    click.echo(f"schedule {key} paused")


@cron_group.command("resume")
@click.argument("key")
@click.pass_context
def cron_resume(ctx: click.Context, key: str) -> None:
    """Let schedule KEY fire again."""
    if not queue_of(ctx).resume_schedule(key):
        raise click.ClickException(f"no schedule with key {key!r}")
    click.echo(f"schedule {key} resumed")

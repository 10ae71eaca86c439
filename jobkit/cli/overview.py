"""Read-only overviews: ``jobkit workers``, ``jobkit stats`` and ``jobkit types``."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table
from rich.text import Text

from jobkit._registry import all_types
from jobkit.cli.context import load_apps, queue_of
from jobkit.cli.output import cell, console, fmt_time


@click.command()
@click.pass_context
def workers(ctx: click.Context) -> None:
    """List live and dead workers with their last heartbeat and running jobs."""
    queue = queue_of(ctx)
    records = queue.workers()
    # stuck: executor threads abandoned to jobs that ignored their token past kill_grace.
    table = Table("id", "host", "pid", "state", "last heartbeat", "concurrency", "running jobs", "stuck")
    for w in records:
        state = "stopped" if w.stopped_at else ("alive" if w.alive else "dead")
        row = [
            cell(w.id),
            cell(w.host),
            cell(w.pid),
            cell(state),
            cell(fmt_time(w.heartbeat_at)),
            cell(w.concurrency),
            cell(", ".join(map(str, w.running)) or "-"),
            cell(w.stuck),
        ]
        table.add_row(*row)
    console.print(table)
    # A second table, only for workers with a process pool or children: the first stays as narrow as it was.
    children = Table("worker", "pool", "child pid", "job", "jobs run", "resident MB")
    for w in records:
        if w.stopped_at is None:
            for row in pool_rows(w.id, w.pool):
                children.add_row(*row)
    if children.row_count:
        console.print(children)


def pool_rows(worker_id: str, report: str | None) -> list[list[Text]]:
    """Rows of the children table from a worker's stored pool report (JSON): one per child, or one for its pool.

    A worker whose pool is threads and which has no child gets no row; an unreadable report gets none.
    """
    try:
        data = json.loads(report) if report else None
        if not isinstance(data, dict):
            return []
        pool = str(data.get("pool", "-"))
        rows = [
            [
                cell(worker_id),
                cell(pool),
                cell(int(child["pid"])),
                cell("idle" if child.get("job") is None else int(child["job"])),
                cell(int(child.get("tasks") or 0)),
                cell(int(child.get("rss") or 0) // (1024 * 1024)),
            ]
            for child in data.get("children") or []
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    if not rows and pool == "processes":
        rows = [[cell(worker_id), cell(pool), cell(None), cell(None), cell(None), cell(None)]]
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Counts by status, queue and job type; running jobs, oldest due pending job, paused queues."""
    queue = queue_of(ctx)
    data = queue.stats()
    paused = queue.paused_queues()
    if as_json:
        click.echo(json.dumps({**data, "paused_queues": paused}, indent=2))
        return
    table = Table("job type", "status", "count")
    for name, counts in sorted(data["by_type"].items()):
        for status, count in sorted(counts.items()):
            table.add_row(cell(name), cell(status), cell(count))
    console.print(table)
    age = data["oldest_pending_age"]
    click.echo(f"running: {data['running']}  oldest due pending: {'-' if age is None else f'{age:.1f}s'}")
    click.echo("paused queues: " + (", ".join(paused) if paused else "none"))


@click.command("types")
@click.option("--app", "apps", multiple=True, help="Module(s) that declare your jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the job types as JSON.")
def types(apps: tuple[str, ...], as_json: bool) -> None:
    """List the job types that --app modules (and plugins) register, with their options."""
    sys.path.insert(0, "")
    load_apps(apps)
    described = {name: t.options.describe() for name, t in sorted(all_types().items())}
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    table = Table("name", "queue", "priority", "max retries", "backoff", "timeout", "retry on", "discard on")
    for name, options in described.items():
        table.add_row(
            cell(name),
            cell(options["queue"]),
            cell(options["priority"]),
            cell(options["max_retries"]),
            cell(options["backoff"]),
            cell("-" if options["timeout"] is None else f"{options['timeout']:g}s"),
            cell(", ".join(options["retry_on"]) or "-"),
            cell(", ".join(options["discard_on"]) or "-"),
        )
    console.print(table)

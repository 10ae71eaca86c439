"""Read-only overviews: ``jobkit workers``, ``jobkit stats`` and ``jobkit types``."""

from __future__ import annotations

import json

import click

from jobkit._registry import describe_types
from jobkit._vocabulary import JobState
from jobkit.cli.context import load_apps, queue_of
from jobkit.cli.output import echo_json, fmt_time, json_option, print_table, wide_option

#: The columns of ``jobkit stats``, in the order a job lives through them.
STATES = [state.value for state in JobState]


@click.command()
@json_option
@wide_option
@click.pass_context
def workers(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """List live and dead workers with their last heartbeat and running jobs."""
    records = queue_of(ctx).workers()
    if as_json:
        echo_json(
            [
                {
                    "id": w.id,
                    "host": w.host,
                    "pid": w.pid,
                    "state": _worker_state(w.stopped_at, w.alive),
                    "queues": worker_queues(w.queues),
                    "concurrency": w.concurrency,
                    "started_at": fmt_time(w.started_at),
                    "heartbeat_at": fmt_time(w.heartbeat_at),
                    "stopped_at": fmt_time(w.stopped_at) if w.stopped_at else None,
                    "running": w.running,
                    "stuck": w.stuck,
                    "pool": _pool_report(w.pool),
                }
                for w in records
            ]
        )
        return
    # stuck: executor threads abandoned to jobs that ignored their token past kill_grace.
    print_table(
        ["id", "host", "pid", "state", "last heartbeat", "concurrency", "running jobs", "stuck"],
        (
            [
                w.id,
                w.host,
                w.pid,
                _worker_state(w.stopped_at, w.alive),
                fmt_time(w.heartbeat_at),
                w.concurrency,
                ", ".join(map(str, w.running)) or "-",
                w.stuck,
            ]
            for w in records
        ),
        fold=("running jobs",),
        wide=wide,
    )
    # A second table, only for workers with a process pool or children: the first stays as narrow as it was.
    children = [row for w in records if w.stopped_at is None for row in pool_rows(w.id, w.pool)]
    if children:
        print_table(["worker", "pool", "child pid", "job", "jobs run", "resident MB"], children, wide=wide)


def worker_queues(stored: str | None) -> list[str] | None:
    """A worker's queues as registered (a JSON list), or None for "every queue"; damaged text shown as one name."""
    if stored is None:
        return None
    try:
        parsed = json.loads(stored)
    except ValueError:
        return [stored]
    return [str(q) for q in parsed] if isinstance(parsed, list) else [str(parsed)]


def _worker_state(stopped_at: float | None, alive: bool) -> str:
    return "stopped" if stopped_at else ("alive" if alive else "dead")


def pool_rows(worker_id: str, report: str | None) -> list[list[object]]:
    """Rows of the children table from a worker's stored pool report (JSON): one per child, or one for its pool.

    A worker whose pool is threads and which has no child gets no row; an unreadable report gets none.
    """
    try:
        data = json.loads(report) if report else None
        if not isinstance(data, dict):
            return []
        pool = str(data.get("pool", "-"))
        rows: list[list[object]] = [
            [
                worker_id,
                pool,
                int(child["pid"]),
                "idle" if child.get("job") is None else int(child["job"]),
                int(child.get("tasks") or 0),
                int(child.get("rss") or 0) // (1024 * 1024),
            ]
            for child in data.get("children") or []
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    if not rows and pool == "processes":
        rows = [[worker_id, pool, None, None, None, None]]
    return rows


@click.command()
@json_option
@click.option(
    "--by",
    type=click.Choice(["queue", "type"]),
    default="queue",
    show_default=True,
    help="Rows per queue or per job type.",
)
@wide_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool, by: str, wide: bool) -> None:
    """Job counts by queue and status (or by job type, --by type); running jobs, oldest due pending job, paused queues."""
    queue = queue_of(ctx)
    data = queue.stats()
    paused = queue.paused_queues()
    if as_json:
        echo_json({**data, "paused_queues": paused})
        return
    counts: dict[str, dict[str, int]] = data["by_queue"] if by == "queue" else data["by_type"]
    rows = [[name, *(counts[name].get(state, 0) for state in STATES)] for name in sorted(counts)]
    rows.append(["total", *(data["by_status"].get(state, 0) for state in STATES)])
    print_table([by, *STATES], rows, fold=(), wide=wide)
    age = data["oldest_pending_age"]
    click.echo(f"running: {data['running']}  oldest due pending: {'-' if age is None else f'{age:.1f}s'}")
    click.echo("paused queues: " + (", ".join(paused) if paused else "none"))


@click.command("types")
@click.option("--app", "apps", multiple=True, help="Module(s) that declare your jobs.")
@json_option
@wide_option
def types(apps: tuple[str, ...], as_json: bool, wide: bool) -> None:
    """List the job types that --app modules (and plugins) register: options, argument schema, result type."""
    load_apps(apps)
    described = describe_types()
    if as_json:
        echo_json(described)
        return
    print_table(
        [
            "name",
            "queue",
            "priority",
            "max retries",
            "backoff",
            "timeout",
            "schema",
            "result",
            "retry on",
            "discard on",
        ],
        (
            [
                name,
                options["queue"],
                options["priority"],
                options["max_retries"],
                options["backoff"],
                "-" if options["timeout"] is None else f"{options['timeout']:g}s",
                options["schema"] or "-",
                options["result"] or "-",
                ", ".join(options["retry_on"]) or "-",
                ", ".join(options["discard_on"]) or "-",
            ]
            for name, options in described.items()
        ),
        fold=("backoff", "schema", "result", "retry on", "discard on"),
        wide=wide,
    )


def _pool_report(report: str | None) -> object:
    # The stored report as JSON, for --json; damaged text passed on as it is.
    try:
        return json.loads(report) if report else None
    except ValueError:
        return report

"""``jobkit queues``: list queues, and pause and resume whole queues for every worker."""

from __future__ import annotations

import click

from jobkit._queue import JobQueue
from jobkit._registry import describe_types
from jobkit.cli.context import EXIT_FAILED, fatal, queue_of
from jobkit.cli.output import echo_json, json_option, print_table, wide_option
from jobkit.cli.overview import STATES, worker_queues


@click.group("queues")
def queues_group() -> None:
    """List queues; pause and resume them for every worker (pauses are stored and survive restarts)."""


def known_queues(queue: JobQueue) -> set[str]:
    """Queues that some job, worker or pause names: any other name is most likely a typo."""
    names = set(queue.stats()["by_queue"]) | set(queue.paused_queues())
    for worker in queue.workers():
        names.update(worker_queues(worker.queues) or ())
    names.update(t["queue"] for t in describe_types().values())
    return names


@queues_group.command("pause")
@click.argument("name")
@click.option("--force", is_flag=True, help="Pause a queue that no job or worker knows yet.")
@click.pass_context
def queues_pause(ctx: click.Context, name: str, force: bool) -> None:
    """Stop every worker from claiming jobs of queue NAME (running jobs finish).

    A name that no job, worker or pause knows is refused (exit 1) unless --force is given.
    """
    queue = queue_of(ctx)
    if not force and name not in (known := known_queues(queue)):
        shown = ", ".join(sorted(known)) or "none"
        fatal(f"unknown queue {name!r} (known queues: {shown}); pass --force to pause it anyway", EXIT_FAILED)
    try:
        queue.pause_queue(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    click.echo(f"queue {name} paused")


@queues_group.command("resume")
@click.argument("name")
@click.pass_context
def queues_resume(ctx: click.Context, name: str) -> None:
    """Let workers claim jobs of queue NAME again."""
    resumed = queue_of(ctx).resume_queue(name)
    click.echo(f"queue {name} resumed" if resumed else f"queue {name} was not paused")


@queues_group.command("list")
@json_option
@wide_option
@click.pass_context
def queues_list(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """Every known queue: paused or not, and its jobs by status."""
    queue = queue_of(ctx)
    by_queue: dict[str, dict[str, int]] = queue.stats()["by_queue"]
    paused = set(queue.paused_queues())
    names = sorted(known_queues(queue))
    if as_json:
        echo_json(
            [
                {
                    "name": name,
                    "paused": name in paused,
                    "counts": {s: by_queue.get(name, {}).get(s, 0) for s in STATES},
                }
                for name in names
            ]
        )
        return
    rows = [
        [name, "yes" if name in paused else "no", *(by_queue.get(name, {}).get(s, 0) for s in STATES)] for name in names
    ]
    print_table(["queue", "paused", *STATES], rows, fold=(), wide=wide)
    click.echo("paused: " + (", ".join(sorted(paused)) if paused else "none"))

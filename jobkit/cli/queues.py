"""``jobkit queues``: pause and resume whole queues for every worker."""

from __future__ import annotations

import click

from jobkit.cli.context import queue_of


@click.group("queues")
def queues_group() -> None:
    """Pause and resume queues for every worker; pauses are stored and survive restarts."""


@queues_group.command("pause")
@click.argument("name")
@click.pass_context
def queues_pause(ctx: click.Context, name: str) -> None:
    """Stop every worker from claiming jobs of queue NAME (running jobs finish)."""
    try:
        queue_of(ctx).pause_queue(name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"queue {name} paused")


@queues_group.command("resume")
@click.argument("name")
@click.pass_context
def queues_resume(ctx: click.Context, name: str) -> None:
    """Let workers claim jobs of queue NAME again."""
    resumed = queue_of(ctx).resume_queue(name)
    click.echo(f"queue {name} resumed" if resumed else f"queue {name} was not paused")


@queues_group.command("list")
@click.pass_context
def queues_list(ctx: click.Context) -> None:
    """Show paused queues."""
    paused = queue_of(ctx).paused_queues()
    click.echo("paused: " + (", ".join(paused) if paused else "none"))

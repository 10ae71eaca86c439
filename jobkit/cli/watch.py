"""``jobkit jobs watch``: one live progress bar (stage, percent, message) for a job's events."""

from __future__ import annotations

import json
from collections.abc import Iterable

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from jobkit._handle import JobEvent
from jobkit._vocabulary import EventType
from jobkit.cli.output import console


def watch_with_bar(job_id: int, events: Iterable[JobEvent]) -> JobEvent | None:
    """Show ``events`` as one bar redrawn in place, then one line for how the job ended; returns the last event.

    Stage and message are stored text: the columns print them literally (``markup=False``).
    On a terminal the bar moves; into a pipe or file Rich draws it once, as it ends.
    """
    last: JobEvent | None = None
    progress = Progress(
        TextColumn(f"job {job_id}", markup=False),
        TextColumn("{task.fields[stage]}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}", markup=False),
        console=console,
        transient=False,
    )
    with progress:
        bar = progress.add_task("", total=100.0, stage="waiting", message="")
        for event in events:
            last = event
            if event.type == EventType.PROGRESS:
                done = None if event.percent is None else max(0.0, min(100.0, event.percent))
                progress.update(bar, completed=done, stage=event.stage or "", message=event.message or "")
            elif event.type == EventType.COMPLETED:
                progress.update(bar, completed=100.0, stage="completed", message="")
            else:
                progress.update(bar, stage=str(event.type))
    if last is not None:
        click.echo(_ending(last))
    return last


def _ending(event: JobEvent) -> str:
    if event.type == EventType.COMPLETED:
        return f"completed: {json.dumps(event.result, default=str)}"
    if event.type == EventType.FAILED:
        error = event.error or {}
        return f"failed: {error.get('type')}: {error.get('message')}"
    return str(event.type)

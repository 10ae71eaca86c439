"""``jobkit jobs``: inspect and control single jobs by id, and clear or retry them in bulk."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import click

from jobkit._handle import JobEvent, JobInfo
from jobkit._payload import redact
from jobkit._queue import JobQueue
from jobkit._registry import MAX_NAME, MAX_QUEUE, all_types, name_problem
from jobkit._vocabulary import EventType, JobState
from jobkit.cli.context import EXIT_FAILED, load_apps, queue_of
from jobkit.cli.output import echo_json, fmt_time, json_option, print_table, wide_option
from jobkit.cli.watch import watch_with_bar
from jobkit.errors import JobNotFound, ResultTimeout


@click.group("jobs")
@click.option(
    "--app",
    "apps",
    multiple=True,
    help="Module(s) that declare your jobs: their schemas' secret fields are shown masked.",
)
def jobs_group(apps: tuple[str, ...]) -> None:
    """Inspect and control jobs: every action works on a job run by any worker, by id."""
    if apps:
        load_apps(apps)


def _name_filter(what: str, limit: int) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A callback refusing a filter value that could never match a stored name (exit 2)."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        problem = None if value is None else name_problem(what, value, limit)
        if problem is not None:
            raise click.BadParameter(problem)
        return value

    return check


@jobs_group.command("list")
@click.option("--status", type=click.Choice([state.value for state in JobState]), default=None)
@click.option("--name", default=None, callback=_name_filter("job type", MAX_NAME), help="Job type.")
@click.option("--queue", "queue_name", default=None, callback=_name_filter("queue", MAX_QUEUE))
@click.option("--limit", type=click.IntRange(min=1, max=10_000), default=50, show_default=True)
@json_option
@wide_option
@click.pass_context
def jobs_list(
    ctx: click.Context,
    status: str | None,
    name: str | None,
    queue_name: str | None,
    limit: int,
    as_json: bool,
    wide: bool,
) -> None:
    """List jobs, newest first, with their progress."""
    found = queue_of(ctx).jobs(status=status, name=name, queue=queue_name, limit=limit)
    if as_json:
        echo_json([_info_json(info) for info in found])
        return
    print_table(
        ["id", "type", "queue", "status", "attempt", "run at", "progress"],
        ([i.id, i.name, i.queue, i.status, i.attempt, fmt_time(i.run_at), _progress(i)] for i in found),
        fold=("progress",),
        wide=wide,
    )


def _progress(info: JobInfo) -> str:
    progress = info.progress
    if not progress:
        return "-"
    if not isinstance(progress, dict):
        return str(progress)
    # A damaged row may hold anything here: show it, never fail the whole listing on it.
    percent = progress.get("percent", 0)
    shown = f"{percent:.0f}%" if isinstance(percent, int | float) else str(percent)
    return f"{shown} {progress.get('stage') or ''} {progress.get('message') or ''}".strip()


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _info_json(info: JobInfo) -> dict[str, Any]:
    """Everything stored about one job, as ``show`` and ``list --json`` print it (secrets masked)."""
    return {
        "id": info.id,
        "name": info.name,
        "queue": info.queue,
        "status": info.status,
        "priority": info.priority,
        "attempt": info.attempt,
        "max_retries": info.max_retries,
        "args": _shown_args(info),
        "run_at": info.run_at.isoformat(),
        "created_at": info.created_at.isoformat(),
        "started_at": _iso(info.started_at),
        "finished_at": _iso(info.finished_at),
        "progress": info.progress,
        "checkpoint": info.checkpoint,
        "result": info.result,
        "errors": info.errors,
        "crashes": info.crashes,
        "worker": info.worker_id,
        "cancel_requested": info.cancel_requested,
        "damaged": info.damaged,
    }


@jobs_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="JSON (the only format of show; accepted for scripts).")
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """Everything stored about one job: arguments, progress, checkpoint, result and error history (JSON)."""
    info = queue_of(ctx).job_info(job_id)
    if info is None:
        raise click.ClickException(f"job {job_id} does not exist")
    echo_json(_info_json(info))


def _shown_args(info: JobInfo) -> Any:
    """A job's arguments as people may see them: secret fields of its schema masked (when its type is imported)."""
    job_type = all_types().get(info.name)
    return redact(info.args, job_type.options.schema if job_type else None)


@jobs_group.command("why")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_why(ctx: click.Context, job_id: int) -> None:
    """Why a job is waiting, in one line: scheduled for later, queue paused, no worker for its type or queue, ..."""
    line = queue_of(ctx).job_why(job_id)
    if line is None:
        raise click.ClickException(f"job {job_id} does not exist")
    click.echo(line)


@jobs_group.command("watch")
@click.argument("job_id", type=int)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit 1).")
@click.option("--until-paused", is_flag=True, help="Also stop when the job is paused.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.pass_context
def jobs_watch(ctx: click.Context, job_id: int, timeout: float | None, until_paused: bool, as_json: bool) -> None:
    """Follow a job with a live progress bar (stage, percent, message) until it ends.

    Exit 0 if it completed (or paused, with --until-paused), 1 if it failed, was cancelled or the
    timeout passed. --json prints one JSON object per event instead.
    """
    queue = queue_of(ctx)
    try:
        events = queue.handle(job_id).stream(timeout=timeout, until_paused=until_paused)
        last = _print_events(events) if as_json else watch_with_bar(job_id, events)
    except JobNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    except ResultTimeout as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        queue.close()
    if last is None or last.type not in (EventType.COMPLETED, EventType.PAUSED):
        ctx.exit(EXIT_FAILED)


def _print_events(events: Iterable[JobEvent]) -> JobEvent | None:
    last = None
    for event in events:
        last = event
        click.echo(json.dumps(dataclasses.asdict(event), default=str))
    return last


#: What each action's refusal means, by the status the job was found in.
_REFUSALS = {
    "retry": "only failed or cancelled jobs can be retried",
    "discard": "only jobs that have not ended can be discarded",
    "delete": "only completed, failed or cancelled jobs can be deleted",
}


def _status_or_fail(queue: JobQueue, job_id: int, verb: str) -> str:
    status = queue.job_status(job_id)
    if status is None:
        raise click.ClickException(f"job {job_id} does not exist")
    raise click.ClickException(f"job {job_id} is {status}: {_REFUSALS.get(verb, f'cannot {verb} it')}")


def _state_action(verb: str, fn_name: str, done: tuple[str, ...], doc: str) -> click.Command:
    @click.argument("job_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, job_id: int) -> None:
        queue = queue_of(ctx)
        status: str | None = getattr(queue, fn_name)(job_id)
        if status is None:
            raise click.ClickException(f"job {job_id} does not exist")
        if status not in done:
            raise click.ClickException(f"job {job_id} is {status}: nothing to {verb}")
        click.echo(f"job {job_id}: {status}")

    command.__doc__ = doc
    return click.command(verb)(command)


@jobs_group.command("cancel")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: int) -> None:
    """Cancel a job: pending or paused at once; running through its token, and ended within kill_grace."""
    queue = queue_of(ctx)
    status = queue.cancel_job(job_id)
    if status is None:
        raise click.ClickException(f"job {job_id} does not exist")
    if status == "cancelling":
        click.echo(
            f"job {job_id}: cancelling (its worker was asked; the job stops at its next token check and ends "
            f"cancelled within kill_grace, {queue.settings.kill_grace:g}s, even if it ignores its token)"
        )
        return
    if status in ("killing", "discarding"):
        click.echo(f"job {job_id}: {status} (a stronger request already stands)")
        return
    if status != JobState.CANCELLED:
        raise click.ClickException(f"job {job_id} is {status}: nothing to cancel")
    click.echo(f"job {job_id}: cancelled")


@jobs_group.command("kill")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_kill(ctx: click.Context, job_id: int) -> None:
    """End a job now, whatever it is doing: pending or paused at once, running without waiting for its token."""
    queue = queue_of(ctx)
    status = queue.kill_job(job_id)
    if status is None:
        raise click.ClickException(f"job {job_id} does not exist")
    if status == "killing":
        click.echo(f"job {job_id}: killing (its worker ends the attempt now and records it cancelled)")
        return
    if status != JobState.CANCELLED:
        raise click.ClickException(f"job {job_id} is {status}: nothing to kill")
    click.echo(f"job {job_id}: cancelled")


jobs_group.add_command(
    _state_action(
        "pause",
        "pause_job",
        (JobState.PAUSED, "pausing"),
        "Pause a job: pending is held, running stops at its next token check and keeps its checkpoint.",
    )
)
jobs_group.add_command(
    _state_action(
        "resume",
        "resume_job",
        (JobState.PENDING, JobState.RUNNING),
        "Resume a paused job from its last checkpoint (or withdraw a pause not yet delivered).",
    )
)


@jobs_group.command("retry")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_retry(ctx: click.Context, job_id: int) -> None:
    """Run a failed or cancelled job again now, keeping its error history and checkpoint."""
    queue = queue_of(ctx)
    if not queue.retry_job(job_id):
        _status_or_fail(queue, job_id, "retry")
    click.echo(f"job {job_id}: pending")


@jobs_group.command("discard")
@click.argument("job_id", type=int)
@click.option("--reason", default="discarded by an operator", help="Recorded in the job's error history.")
@click.pass_context
def jobs_discard(ctx: click.Context, job_id: int, reason: str) -> None:
    """Force a job to failed: pending (or retrying) or paused at once, running by asking its worker."""
    queue = queue_of(ctx)
    if not queue.discard_job(job_id, reason):
        _status_or_fail(queue, job_id, "discard")
    if queue.job_status(job_id) == JobState.RUNNING:
        click.echo(f"job {job_id}: discarding (its worker was asked; the job ends failed with the reason)")
        return
    click.echo(f"job {job_id}: failed")


@jobs_group.command("delete")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_delete(ctx: click.Context, job_id: int) -> None:
    """Delete a finished job with its checkpoint, progress and history."""
    queue = queue_of(ctx)
    if not queue.delete_job(job_id):
        _status_or_fail(queue, job_id, "delete")
    click.echo(f"job {job_id}: deleted")


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a duration such as 90, 30m, 12h or 7d") from None
    if seconds < 0:
        raise click.BadParameter("durations cannot be negative")
    return seconds


@jobs_group.command("clear")
@click.argument("status", type=click.Choice([JobState.COMPLETED.value, JobState.FAILED.value]))
@click.option("--older-than", default=None, help="Only jobs finished longer ago than this: 90 (seconds), 30m, 12h, 7d.")
@click.option("--name", default=None, callback=_name_filter("job type", MAX_NAME), help="Job type.")
@click.option("--queue", "queue_name", default=None, callback=_name_filter("queue", MAX_QUEUE))
@click.pass_context
def jobs_clear(
    ctx: click.Context, status: str, older_than: str | None, name: str | None, queue_name: str | None
) -> None:
    """Delete completed or failed jobs (with their checkpoints)."""
    queue = queue_of(ctx)
    clear = queue.clear_completed if status == JobState.COMPLETED else queue.clear_failed
    click.echo(f"deleted {clear(older_than=_duration(older_than), name=name, queue=queue_name)} {status} jobs")


@jobs_group.command("retry-failed")
@click.option("--name", default=None, callback=_name_filter("job type", MAX_NAME), help="Job type.")
@click.option("--queue", "queue_name", default=None, callback=_name_filter("queue", MAX_QUEUE))
@click.pass_context
def jobs_retry_failed(ctx: click.Context, name: str | None, queue_name: str | None) -> None:
    """Put every failed job (of a type or queue) back to pending."""
    click.echo(f"retrying {queue_of(ctx).retry_failed(name=name, queue=queue_name)} failed jobs")

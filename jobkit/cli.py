"""The ``jobkit`` command: thin commands over :class:`jobkit.JobQueue`."""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobkit._clock import to_datetime
from jobkit._handle import JobInfo
from jobkit._payload import redact
from jobkit._queue import JobQueue
from jobkit._registry import all_types
from jobkit._settings import Settings, load_settings
from jobkit._store import check_database
from jobkit.errors import ConfigurationError, DatabaseUnavailable, JobNotFound, ResultTimeout, SchemaMissing

console = Console()

T = TypeVar("T")

#: Exit statuses of ``jobkit worker`` and of every command that needs the database.
EXIT_OK = 0
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


class StopRequested(BaseException):
    """Raised in the main thread by SIGTERM or SIGINT during the worker's start-up.

    A BaseException, like KeyboardInterrupt, so that an ``except Exception`` in an imported
    module cannot swallow the operator's stop.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _frame: Any) -> None:
    raise StopRequested(signum)


@contextmanager
def stop_on_signal() -> Iterator[None]:
    """SIGTERM and SIGINT raise StopRequested while the block runs (importing apps, migrating)."""
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def off_main_thread(step: Callable[[], T]) -> T:
    """Run a slow start-up step (connecting, migrating) on a helper thread and wait for it.

    A signal is handled only when the main thread runs Python code; a database call blocked in C
    (SQLite's busy wait on a locked file) would hold it off for seconds. Waiting here instead, the
    main thread takes the signal at once and the helper, a daemon, ends with the process; an
    unfinished migration is rolled back by the database.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(step())
        except BaseException as exc:  # re-raised in the main thread below
            failure.append(exc)

    helper = threading.Thread(target=run, name="jobkit-startup", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(0.1)
    if failure:
        raise failure[0]
    return result[0]


def cell(value: object) -> Text:
    """A table cell that shows ``value`` literally: stored text is data, never Rich markup."""
    return Text("-" if value is None else str(value))


def _fmt_time(value: datetime | float | None) -> str:
    if value is None:
        return "-"
    when = to_datetime(value) if isinstance(value, float | int) else value
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def _settings(**given: Any) -> Settings:
    try:
        return load_settings(**given)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def _open_queue(settings: Settings) -> JobQueue:
    preflight(settings)
    return JobQueue(settings)


def _queue(ctx: click.Context) -> JobQueue:
    obj = ctx.ensure_object(dict)
    if "queue" not in obj:
        obj["queue"] = _open_queue(_settings(database_url=obj.get("database_url")))
    queue: JobQueue = obj["queue"]
    return queue


def load_apps(modules: tuple[str, ...]) -> None:
    """Import the modules that declare jobs, and every ``jobkit.plugins`` entry point."""
    for module in modules:
        for name in module.split(","):
            if name.strip():
                importlib.import_module(name.strip())
    for plugin in entry_points(group="jobkit.plugins"):
        try:
            plugin.load()
        except Exception as exc:
            click.echo(f"warning: plugin {plugin.name!r} failed to load: {exc}", err=True)


@click.group()
@click.option("--database-url", envvar="JOBKIT_DATABASE_URL", help="Database URL (default sqlite:///jobkit.sqlite3).")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO.")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, verbose: bool) -> None:
    """jobkit: declarative background jobs on SQLite and PostgreSQL."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict)["database_url"] = database_url


@main.command()
@click.option("--app", "apps", multiple=True, required=True, help="Module(s) that declare your jobs.")
@click.option("--concurrency", type=int, default=None, help="Jobs run at once (default 5).")
@click.option("--queues", default=None, help="Comma-separated queues to work (default: all).")
@click.option("--database-url", default=None, help="Database URL (overrides the group option).")
@click.option("--poll-interval", type=float, default=None, help="Seconds between fallback polls.")
@click.option("--shutdown-grace", type=float, default=None, help="Seconds running jobs get on SIGTERM.")
@click.pass_context
def worker(
    ctx: click.Context,
    apps: tuple[str, ...],
    concurrency: int | None,
    queues: str | None,
    database_url: str | None,
    poll_interval: float | None,
    shutdown_grace: float | None,
) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal shortens the drain).

    Exit status: 0 after a requested stop (also during start-up), 2 when jobkit's tables are
    missing (auto-migration off) or disappear, 3 when the database cannot be reached at start-up,
    4 when too many executor threads are stuck in jobs that ignore their timeout.
    """
    logging.getLogger("jobkit").setLevel(logging.INFO)
    status: int | None = None
    try:
        # From the first moment to the last a signal stops the process: here by raising StopRequested
        # (importing, connecting, migrating), inside run() by draining the worker.
        with stop_on_signal():
            sys.path.insert(0, "")
            load_apps(apps)
            settings = _settings(
                database_url=database_url or ctx.obj.get("database_url"),
                concurrency=concurrency,
                queues=queues,
                poll_interval=poll_interval,
                shutdown_grace=shutdown_grace,
            )
            queue = off_main_thread(lambda: _open_queue(settings))
            JobQueue.set_instance(queue)
            running = queue.worker
            click.echo(
                f"jobkit worker {running.id}: {len(queue.job_types())} job types, concurrency {settings.concurrency}"
            )
            status = queue.run()
            queue.store.close()
    except StopRequested as stop:
        if status is None:
            click.echo(f"jobkit: stopped by {stop} during start-up", err=True)
            ctx.exit(EXIT_OK)
    if status:
        reason = running.fatal_reason or "the worker stopped on its own"
        fatal(f"{reason} (exit {status})", status)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or upgrade jobkit's tables to the newest migration."""
    settings = _settings(database_url=ctx.obj.get("database_url"), auto_migrate=False)
    preflight(settings, require_schema=False)
    queue = JobQueue(settings)
    queue.store.migrate()
    click.echo("jobkit schema is up to date")


@main.command()
@click.pass_context
def workers(ctx: click.Context) -> None:
    """List live and dead workers with their last heartbeat and running jobs."""
    queue = _queue(ctx)
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
            cell(_fmt_time(w.heartbeat_at)),
            cell(w.concurrency),
            cell(", ".join(map(str, w.running)) or "-"),
            cell(w.stuck),
        ]
        table.add_row(*row)
    console.print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Counts by status, queue and job type; running jobs, oldest due pending job, paused queues."""
    queue = _queue(ctx)
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


@main.command("types")
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


@main.group()
@click.option(
    "--app",
    "apps",
    multiple=True,
    help="Module(s) that declare your jobs: their schemas' secret fields are shown masked.",
)
def jobs(apps: tuple[str, ...]) -> None:
    """Inspect and control jobs: every action works on a job run by any worker, by id."""
    if apps:
        sys.path.insert(0, "")
        load_apps(apps)


@jobs.command("list")
@click.option("--status", default=None)
@click.option("--name", default=None, help="Job type.")
@click.option("--queue", "queue_name", default=None)
@click.option("--limit", type=int, default=50)
@click.pass_context
def jobs_list(ctx: click.Context, status: str | None, name: str | None, queue_name: str | None, limit: int) -> None:
    """List jobs, newest first, with their progress."""
    table = Table("id", "type", "queue", "status", "attempt", "run at", "progress")
    for info in _queue(ctx).jobs(status=status, name=name, queue=queue_name, limit=limit):
        table.add_row(
            cell(info.id),
            cell(info.name),
            cell(info.queue),
            cell(info.status),
            cell(info.attempt),
            cell(_fmt_time(info.run_at)),
            cell(_progress(info)),
        )
    console.print(table)


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


@jobs.command("show")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int) -> None:
    """Everything stored about one job: arguments, progress, checkpoint, result and error history (JSON)."""
    info = _queue(ctx).job_info(job_id)
    if info is None:
        raise click.ClickException(f"job {job_id} does not exist")
    data: dict[str, Any] = {
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
        "started_at": None if info.started_at is None else info.started_at.isoformat(),
        "finished_at": None if info.finished_at is None else info.finished_at.isoformat(),
        "progress": info.progress,
        "checkpoint": info.checkpoint,
        "result": info.result,
        "errors": info.errors,
        "crashes": info.crashes,
        "worker": info.worker_id,
        "cancel_requested": info.cancel_requested,
        "damaged": info.damaged,
    }
    click.echo(json.dumps(data, indent=2, default=str))


def _shown_args(info: JobInfo) -> Any:
    """A job's arguments as people may see them: secret fields of its schema masked (when its type is imported)."""
    job_type = all_types().get(info.name)
    return redact(info.args, job_type.options.schema if job_type else None)


@jobs.command("watch")
@click.argument("job_id", type=int)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit 1).")
@click.option("--until-paused", is_flag=True, help="Also stop when the job is paused.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.pass_context
def jobs_watch(ctx: click.Context, job_id: int, timeout: float | None, until_paused: bool, as_json: bool) -> None:
    """Follow a job's progress, stage by stage, until it ends; exit 0 if it completed (or paused, with --until-paused)."""
    queue = _queue(ctx)
    last = None
    try:
        for event in queue.handle(job_id).stream(timeout=timeout, until_paused=until_paused):
            last = event
            if as_json:
                click.echo(json.dumps(dataclasses.asdict(event), default=str), nl=True)
                continue
            if event.type == "progress":
                percent = "" if event.percent is None else f"{event.percent:5.1f}%"
                click.echo(f"{percent:>6} {event.stage or '':<12} {event.message or ''}".rstrip())
            elif event.type == "failed":
                error = event.error or {}
                click.echo(f"failed: {error.get('type')}: {error.get('message')}")
            elif event.type == "completed":
                click.echo(f"completed: {json.dumps(event.result, default=str)}")
            else:
                click.echo(event.type)
    except JobNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    except ResultTimeout as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        queue.close()
    if last is None or last.type not in ("completed", "paused"):
        ctx.exit(1)


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
        queue = _queue(ctx)
        status: str | None = getattr(queue, fn_name)(job_id)
        if status is None:
            raise click.ClickException(f"job {job_id} does not exist")
        if status not in done:
            raise click.ClickException(f"job {job_id} is {status}: nothing to {verb}")
        click.echo(f"job {job_id}: {status}")

    command.__doc__ = doc
    return click.command(verb)(command)


@jobs.command("cancel")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: int) -> None:
    """Cancel a job: pending or paused at once; running through its token, and ended within kill_grace."""
    queue = _queue(ctx)
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
    if status != "cancelled":
        raise click.ClickException(f"job {job_id} is {status}: nothing to cancel")
    click.echo(f"job {job_id}: cancelled")


@jobs.command("kill")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_kill(ctx: click.Context, job_id: int) -> None:
    """End a job now, whatever it is doing: pending or paused at once, running without waiting for its token."""
    queue = _queue(ctx)
    status = queue.kill_job(job_id)
    if status is None:
        raise click.ClickException(f"job {job_id} does not exist")
    if status == "killing":
        click.echo(f"job {job_id}: killing (its worker ends the attempt now and records it cancelled)")
        return
    if status != "cancelled":
        raise click.ClickException(f"job {job_id} is {status}: nothing to kill")
    click.echo(f"job {job_id}: cancelled")


jobs.add_command(
    _state_action(
        "pause",
        "pause_job",
        ("paused", "pausing"),
        "Pause a job: pending is held, running stops at its next token check and keeps its checkpoint.",
    )
)
jobs.add_command(
    _state_action(
        "resume",
        "resume_job",
        ("pending", "running"),
        "Resume a paused job from its last checkpoint (or withdraw a pause not yet delivered).",
    )
)


@jobs.command("retry")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_retry(ctx: click.Context, job_id: int) -> None:
    """Run a failed or cancelled job again now, keeping its error history and checkpoint."""
    queue = _queue(ctx)
    if not queue.retry_job(job_id):
        _status_or_fail(queue, job_id, "retry")
    click.echo(f"job {job_id}: pending")


@jobs.command("discard")
@click.argument("job_id", type=int)
@click.option("--reason", default="discarded by an operator", help="Recorded in the job's error history.")
@click.pass_context
def jobs_discard(ctx: click.Context, job_id: int, reason: str) -> None:
    """Force a job to failed: pending (or retrying) or paused at once, running by asking its worker."""
    queue = _queue(ctx)
    if not queue.discard_job(job_id, reason):
        _status_or_fail(queue, job_id, "discard")
    if queue.job_status(job_id) == "running":
        click.echo(f"job {job_id}: discarding (its worker was asked; the job ends failed with the reason)")
        return
    click.echo(f"job {job_id}: failed")


@jobs.command("delete")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_delete(ctx: click.Context, job_id: int) -> None:
    """Delete a finished job with its checkpoint, progress and history."""
    queue = _queue(ctx)
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


@jobs.command("clear")
@click.argument("status", type=click.Choice(["completed", "failed"]))
@click.option("--older-than", default=None, help="Only jobs finished longer ago than this: 90 (seconds), 30m, 12h, 7d.")
@click.option("--name", default=None, help="Job type.")
@click.option("--queue", "queue_name", default=None)
@click.pass_context
def jobs_clear(
    ctx: click.Context, status: str, older_than: str | None, name: str | None, queue_name: str | None
) -> None:
    """Delete completed or failed jobs (with their checkpoints)."""
    queue = _queue(ctx)
    clear = queue.clear_completed if status == "completed" else queue.clear_failed
    click.echo(f"deleted {clear(older_than=_duration(older_than), name=name, queue=queue_name)} {status} jobs")


@jobs.command("retry-failed")
@click.option("--name", default=None, help="Job type.")
@click.option("--queue", "queue_name", default=None)
@click.pass_context
def jobs_retry_failed(ctx: click.Context, name: str | None, queue_name: str | None) -> None:
    """Put every failed job (of a type or queue) back to pending."""
    click.echo(f"retrying {_queue(ctx).retry_failed(name=name, queue=queue_name)} failed jobs")


@main.group()
def queues() -> None:
    """Pause and resume queues for every worker; pauses are stored and survive restarts."""


@queues.command("pause")
@click.argument("name")
@click.pass_context
def queues_pause(ctx: click.Context, name: str) -> None:
    """Stop every worker from claiming jobs of queue NAME (running jobs finish)."""
    try:
        _queue(ctx).pause_queue(name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"queue {name} paused")


@queues.command("resume")
@click.argument("name")
@click.pass_context
def queues_resume(ctx: click.Context, name: str) -> None:
    """Let workers claim jobs of queue NAME again."""
    resumed = _queue(ctx).resume_queue(name)
    click.echo(f"queue {name} resumed" if resumed else f"queue {name} was not paused")


@queues.command("list")
@click.pass_context
def queues_list(ctx: click.Context) -> None:
    """Show paused queues."""
    paused = _queue(ctx).paused_queues()
    click.echo("paused: " + (", ".join(paused) if paused else "none"))


if __name__ == "__main__":  # pragma: no cover
    main()

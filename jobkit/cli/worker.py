"""``jobkit worker``: start-up that a signal can always interrupt, then the worker until it stops."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from jobkit._bulk import register_bulk
from jobkit._queue import JobQueue
from jobkit._store import database_location
from jobkit.cli.context import EXIT_OK, EXIT_USAGE, command_settings, fatal, load_apps, open_queue
from jobkit.contrib.health import serve_health

T = TypeVar("T")


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


@click.command("worker")
@click.option("--app", "apps", multiple=True, required=True, help="Module(s) that declare your jobs.")
@click.option("--concurrency", type=int, default=None, help="Jobs run at once (default 5).")
@click.option("--queues", default=None, help="Comma-separated queues to work (default: all).")
@click.option(
    "--queue",
    "queue_options",
    multiple=True,
    help="A queue to work, as NAME or NAME=SLOTS (its own slots; repeat: --queue default=10 --queue mailers=2).",
)
@click.option("--database-url", default=None, help="Database URL (overrides the group option).")
@click.option("--poll-interval", type=float, default=None, help="Seconds between fallback polls.")
@click.option("--shutdown-grace", type=float, default=None, help="Seconds running jobs get on SIGTERM.")
@click.option(
    "--pool",
    type=click.Choice(["threads", "processes"]),
    default=None,
    help="Where jobs without an isolation option run (default threads).",
)
@click.option("--kill-grace", type=float, default=None, help="Seconds a cancelled job gets before it is ended.")
@click.option("--max-tasks-per-child", type=int, default=None, help="Jobs a child process runs before it is replaced.")
@click.option(
    "--max-memory-per-child", default=None, help="Resident size ('200MB' or bytes) past which a child is replaced."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port at /metrics (needs jobkit[prometheus]).",
)
@click.option("--metrics-addr", default="0.0.0.0", show_default=True, help="Address the metrics server binds.")
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /healthz (claim loop turning) and /readyz (registered, lease held, database reachable) on this port.",
)
@click.option("--health-addr", default="0.0.0.0", show_default=True, help="Address the health server binds.")
@click.option(
    "--otel",
    is_flag=True,
    help="Trace attempts and record messaging metrics with OpenTelemetry's global providers (needs jobkit[otel]).",
)
@click.pass_context
def worker_command(
    ctx: click.Context,
    apps: tuple[str, ...],
    concurrency: int | None,
    queues: str | None,
    queue_options: tuple[str, ...],
    database_url: str | None,
    poll_interval: float | None,
    shutdown_grace: float | None,
    pool: str | None,
    kill_grace: float | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: str | None,
    metrics_port: int | None,
    metrics_addr: str,
    health_port: int | None,
    health_addr: str,
    otel: bool,
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
            register_bulk()  # every worker runs the dashboard's bulk actions
            settings = command_settings(
                database_url=database_url or ctx.obj.get("database_url"),
                concurrency=concurrency,
                queues=[*(queues.split(",") if queues else []), *queue_options] or None,
                poll_interval=poll_interval,
                shutdown_grace=shutdown_grace,
                pool=pool,
                kill_grace=kill_grace,
                max_tasks_per_child=max_tasks_per_child,
                max_memory_per_child=max_memory_per_child,
            )
            queue = off_main_thread(lambda: open_queue(settings))
            JobQueue.set_instance(queue)
            if metrics_port is not None:
                _serve_metrics(queue, metrics_port, metrics_addr)
            if health_port is not None:
                _serve_health(queue, health_port, health_addr)
            if otel:
                _trace(queue)
            running = queue.worker
            slots = settings.queue_slots
            shared = f"concurrency {settings.concurrency}"
            click.echo(
                f"jobkit worker {running.id}: {len(queue.job_types())} job types, "
                + (", ".join(f"{name}={count}" for name, count in slots.items()) if slots else shared)
                + f", database {database_location(settings.database_url)}"
                + f", pool {settings.pool}"
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


def _serve_metrics(queue: JobQueue, port: int, addr: str) -> None:
    """Start the Prometheus endpoint, or exit 2 saying what is missing or why the port was refused."""
    try:
        from jobkit.contrib import prometheus
    except ImportError:
        fatal("--metrics-port needs prometheus_client: pip install 'jobkit[prometheus]'", EXIT_USAGE)
    try:
        metrics = prometheus.serve(queue, port, addr)
    except OSError as exc:
        fatal(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}", EXIT_USAGE)
    click.echo(f"jobkit worker: metrics at http://{addr}:{metrics.port}/metrics")


def _serve_health(queue: JobQueue, port: int, addr: str) -> None:
    """Start the health endpoints (answering 503 until the worker has registered), or exit 2 on a refused port."""
    try:
        server = serve_health(queue, port, addr)
    except OSError as exc:
        fatal(f"cannot serve health checks on {addr}:{port}: {exc.strerror or exc}", EXIT_USAGE)
    click.echo(f"jobkit worker: health at http://{addr}:{server.port}/healthz and /readyz")


def _trace(queue: JobQueue) -> None:
    """Instrument the worker with OpenTelemetry (the providers the --app modules or the environment set up)."""
    try:
        from jobkit.contrib import otel
    except ImportError:
        fatal("--otel needs opentelemetry-api: pip install 'jobkit[otel]'", EXIT_USAGE)
    otel.instrument(queue)

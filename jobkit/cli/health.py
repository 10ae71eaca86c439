"""``jobkit health``: one command for scripts and container health checks, answered by its exit status."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import click

from jobkit.cli.context import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, fatal, queue_of
from jobkit.cli.output import echo_json, json_option


@click.command("health")
@click.option(
    "--url",
    default=None,
    help="Probe a worker's health endpoint instead (e.g. http://127.0.0.1:8081/readyz, see worker --health-port).",
)
@click.option("--min-workers", type=click.IntRange(0), default=1, show_default=True, help="Live workers required.")
@click.option(
    "--max-ready-age",
    type=click.FloatRange(0),
    default=None,
    help="Fail when the oldest due job has waited longer than this many seconds.",
)
@click.option("--timeout", type=click.FloatRange(0.1), default=5.0, show_default=True, help="Seconds for --url.")
@json_option
@click.pass_context
def health_command(
    ctx: click.Context, url: str | None, min_workers: int, max_ready_age: float | None, timeout: float, as_json: bool
) -> None:
    """Check jobkit's health: the database answers, enough workers are alive, jobs do not wait too long.

    With --url, ask one worker's /healthz or /readyz instead (no curl needed in the image).
    Exit status: 0 healthy, 1 a check failed, 3 the database (or the URL) cannot be reached.
    """
    if url is not None:
        _probe(url, timeout, as_json)
        return
    queue = queue_of(ctx)
    alive = sum(1 for worker in queue.workers() if worker.alive)
    age = queue.stats()["oldest_pending_age"]
    checks: dict[str, Any] = {
        "database": {"ok": True},
        "workers_alive": {"ok": alive >= min_workers, "value": alive, "required": min_workers},
    }
    if max_ready_age is not None:
        checks["oldest_ready_age"] = {"ok": age is None or age <= max_ready_age, "value": age, "limit": max_ready_age}
    healthy = all(check["ok"] for check in checks.values())
    if as_json:
        echo_json({"healthy": healthy, "checks": checks})
    else:
        click.echo(f"database: reachable ({queue.store.safe_url})")
        click.echo(f"workers alive: {alive} (need {min_workers}){'' if checks['workers_alive']['ok'] else ': FAIL'}")
        if max_ready_age is not None:
            waited = "none waiting" if age is None else f"{age:.1f}s"
            verdict = "" if checks["oldest_ready_age"]["ok"] else ": FAIL"
            click.echo(f"oldest ready job: {waited} (limit {max_ready_age:g}s){verdict}")
        click.echo("healthy" if healthy else "unhealthy")
    ctx.exit(EXIT_OK if healthy else EXIT_FAILED)


def _probe(url: str, timeout: float, as_json: bool) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        fatal(f"cannot reach {url}: {reason}", EXIT_UNAVAILABLE)
    try:
        body = json.loads(text)
    except ValueError:
        body = {"status": text.strip()}
    if as_json:
        echo_json({"url": url, "http_status": status, **body})
    else:
        click.echo(f"{url}: HTTP {status} {body.get('status', '')}".rstrip())
    raise click.exceptions.Exit(EXIT_OK if status == 200 else EXIT_FAILED)

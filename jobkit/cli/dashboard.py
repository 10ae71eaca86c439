"""``jobkit dashboard``: serve the web dashboard over one database, standalone, with uvicorn."""

from __future__ import annotations

import sys

import click

from jobkit.cli.context import command_settings, fatal, load_apps, open_queue

EXIT_USAGE = 2


@click.command("dashboard")
@click.option("--database-url", default=None, help="Database URL (overrides the group option).")
@click.option("--app", "apps", multiple=True, help="Module(s) that declare your jobs (for forms and type lists).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port to listen on.")
@click.option("--read-only", is_flag=True, default=None, help="Nobody may act (also JOBKIT_DASHBOARD_READ_ONLY=true).")
@click.pass_context
def dashboard_command(
    ctx: click.Context, database_url: str | None, apps: tuple[str, ...], host: str, port: int, read_only: bool | None
) -> None:
    """Serve the web dashboard (needs ``pip install jobkit[dashboard]``).

    Closed until access is configured: JOBKIT_DASHBOARD_USER and JOBKIT_DASHBOARD_PASSWORD
    (HTTP basic), or --read-only.
    """
    try:
        # The dashboard's libraries are an optional extra: the rest of the CLI works without them.
        from jobkit import dashboard
        from jobkit.dashboard.serve import serve
    except ImportError as exc:
        fatal(f"the dashboard needs its extra: pip install 'jobkit[dashboard]' ({exc})", EXIT_USAGE)
    sys.path.insert(0, "")
    load_apps(apps)
    settings = command_settings(database_url=database_url or ctx.obj.get("database_url"))
    queue = open_queue(settings)
    try:
        web = dashboard.app(queue, read_only=read_only or None)
    except ValueError as exc:
        fatal(str(exc), EXIT_USAGE)
    click.echo(f"jobkit dashboard on http://{host}:{port}/ ({queue.store.safe_url})")
    try:
        serve(web, host=host, port=port)
    finally:
        queue.close()

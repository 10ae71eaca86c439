"""`make demo`: sign up subscribers, build the weekly report with a live progress stream, show what happened."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table


def main() -> int:
    """Run the newsletter end to end on the embedded SQLite default; returns the exit code."""
    workdir = Path(tempfile.mkdtemp(prefix="jobkit-demo-"))
    os.environ.setdefault("JOBKIT_DATABASE_URL", f"sqlite:///{workdir / 'newsletter.sqlite3'}")

    import jobkit
    from example_app.app import sign_up
    from example_app.db import engine, outbox
    from example_app.jobs import BuildWeeklyReport

    console = Console()
    queue = jobkit.configure(concurrency=4, poll_interval=0.5)
    console.print(f"[bold]jobkit demo[/bold] on {queue.settings.database_url}")

    welcome = [sign_up(f"{name.lower()}@example.com", name) for name in ("Ada", "Grace", "Linus")]
    queue.start()
    try:
        for handle in welcome:
            handle.result(timeout=30)
        report = BuildWeeklyReport.perform_later(week="2026-W48")
        for event in report.stream(timeout=60):
            if event.type == "progress":
                percent = "" if event.percent is None else f"{event.percent:5.1f}%"
                console.print(f"  report: {percent:6} {event.stage or '':8} {event.message or ''}")
            else:
                console.print(f"  report: {event.type}  {event.result if event.result is not None else ''}")
        summary = report.result(timeout=10)
    finally:
        queue.stop(grace=5)

    table = Table("to", "subject")
    with engine().connect() as conn:
        for row in conn.execute(sa.select(outbox.c.to, outbox.c.subject).order_by(outbox.c.id)):
            table.add_row(row.to, row.subject)
    console.print(table)
    stats = queue.stats()["by_status"]
    console.print(f"jobs: {stats}")
    console.print(f"follow-ups scheduled for later: {stats.get('pending', 0)}")
    ok = summary == {"week": "2026-W48", "subscribers": 3} and stats.get("completed") == 4
    console.print("[green]demo finished OK[/green]" if ok else "[red]demo did not finish as expected[/red]")
    queue.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

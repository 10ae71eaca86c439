"""`make demo`: sign up subscribers, build the weekly report and import a CSV export with live progress streams
(pausing and resuming the import half-way), then show what happened."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from jobkit import JobEvent, JobHandle

#: The import's rows: 60 new subscribers, one who signed up already, two bad rows and a duplicate.
IMPORT_ROWS = 60
EXPECTED_IMPORT = {"rows": 64, "added": IMPORT_ROWS, "already_subscribed": 1, "rejected": 3}


def write_export(path: Path) -> None:
    """A CSV export such as another newsletter tool would produce."""
    lines = ["email,name", *(f"reader{i}@example.org,Reader {i}" for i in range(IMPORT_ROWS))]
    lines += ["ada@example.com,Ada", "not-an-email,Bob", "carol@example.org,", "reader7@example.org,Reader 7"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def show(console: Console, label: str, event: JobEvent) -> None:
    """One line per stream event."""
    if event.type == "progress":
        percent = "" if event.percent is None else f"{event.percent:5.1f}%"
        console.print(f"  {label}: {percent:6} {event.stage or '':8} {event.message or ''}")
    else:
        console.print(f"  {label}: {event.type}")
        if event.result is not None:
            console.print(f"    {summary(event.result)}")


def summary(result: object) -> str:
    """A job's result on one line that fits 80 columns: ``key=value`` pairs, a path by its file name."""
    if not isinstance(result, dict):
        return repr(result)
    return " ".join(f"{key}={Path(value).name if key == 'path' else value}" for key, value in result.items())


def import_with_a_pause(console: Console, handle: JobHandle) -> None:
    """Follow the import's stream; pause it once it has stored some rows, then resume it from its checkpoint."""
    pause_requested = False
    for event in handle.stream(timeout=60):
        show(console, "import", event)
        if event.type == "paused":
            checkpoint = handle.refresh().checkpoint or {}
            stored = (checkpoint.get("data") or {}).get("stored")
            console.print(
                f"  import: paused at checkpoint '{checkpoint.get('stage')}' ({stored} rows stored); resuming"
            )
            handle.resume()
        elif event.stage == "store" and not pause_requested and (event.data.get("added") or 0) >= 20:
            pause_requested = True
            console.print(f"  import: pause requested -> {handle.pause()}")


def main() -> int:
    """Run the newsletter end to end on the embedded SQLite default; returns the exit code."""
    workdir = Path(tempfile.mkdtemp(prefix="jobkit-demo-"))
    os.environ.setdefault("JOBKIT_DATABASE_URL", f"sqlite:///{workdir / 'newsletter.sqlite3'}")

    import jobkit
    from example_app.accounts import sync_all
    from example_app.app import sign_up
    from example_app.db import engine, outbox
    from example_app.jobs import BuildWeeklyReport
    from example_app.pipeline import ImportSubscribers

    console = Console()
    # A short cancel_check_interval so the pause below reaches the running import quickly.
    queue = jobkit.configure(concurrency=4, poll_interval=0.5, cancel_check_interval=0.1)
    console.print(f"[bold]jobkit demo[/bold] on {queue.settings.database_url}")

    welcome = [sign_up(f"{name.lower()}@example.com", name) for name in ("Ada", "Grace", "Linus")]
    queue.start()
    try:
        for handle in welcome:
            handle.result(timeout=30)
        report = BuildWeeklyReport.perform_later(week="2026-W48")
        for event in report.stream(timeout=60):
            show(console, "report", event)
        summary = report.result(timeout=10)

        export = workdir / "subscribers.csv"
        write_export(export)
        imported = ImportSubscribers.perform_later(path=str(export), batch_size=10, throttle=0.1)
        import_with_a_pause(console, imported)
        import_summary = imported.result(timeout=30)

        # Per-account CRM syncs: 3 per subscriber enqueued at once, never two of one subscriber at a time.
        synced = sync_all([f"{name.lower()}@example.com" for name in ("Ada", "Grace", "Linus")])
        peaks = ", ".join(f"{email.split('@')[0]} {peak}" for email, peak in synced.items())
        console.print(f"CRM syncs, most at once per subscriber: {peaks}")
    finally:
        queue.stop(grace=5)

    table = Table("to", "subject")
    with engine().connect() as conn:
        for row in conn.execute(sa.select(outbox.c.to, outbox.c.subject).order_by(outbox.c.id)):
            table.add_row(row.to, row.subject)
    console.print(table)
    stats = queue.stats()["by_status"]
    console.print("jobs: " + ", ".join(f"{count} {status}" for status, count in sorted(stats.items())))
    # The nightly digest is declared with cron=...: the worker stored its schedule when it started.
    nightly = next(s for s in queue.schedules() if s["key"] == "newsletter.nightly_digest")
    console.print(f"nightly digest ({nightly['cron']} {nightly['timezone']}): next at {_utc(nightly['next_fire_at'])}")
    # A demo run that happens to span 02:00 Berlin time also ran tonight's digest.
    digests = len(queue.jobs(name="newsletter.nightly_digest", status="completed"))
    console.print(f"follow-ups scheduled for later: {stats.get('pending', 0)}")
    ok = (
        summary == {"week": "2026-W48", "subscribers": 3}
        and import_summary == {"path": str(export), **EXPECTED_IMPORT}
        and stats.get("completed", 0) - digests == 5 + 3 * len(synced)
        and set(synced.values()) == {1}
    )
    console.print("[green]demo finished OK[/green]" if ok else "[red]demo did not finish as expected[/red]")
    queue.close()
    return 0 if ok else 1


def _utc(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    sys.exit(main())

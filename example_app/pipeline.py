"""Importing subscribers from a CSV export: a long-running job in four checkpointed stages.

    fetch -> validate -> store (in batches) -> report

Each stage saves a checkpoint, and ``store`` saves one after every batch, so a retry, a
resume after ``pause`` or a rescue after a worker crash continues where the job stopped
instead of starting again. Storing is idempotent (rows whose email is already subscribed
are skipped), so the one batch that may run twice — a crash between its commit and its
checkpoint — does no harm.

A worker process needs this module as well as the app's other jobs::

    jobkit worker --app example_app.jobs,example_app.pipeline
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field, ValidationError

from example_app.db import engine, subscribers
from example_app.jobs import send
from jobkit import BaseJob, Discard, job

STAGES = ("fetch", "validate", "store", "report")


class ImportArgs(BaseModel):
    path: str
    batch_size: int = Field(default=25, ge=1)
    # Seconds to wait between batches, so a large import does not crowd out the app's own writes.
    throttle: float = Field(default=0.0, ge=0)
    notify: str = "editors@example.com"


class SubscriberRow(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    name: str = Field(min_length=1)


def read_rows(path: str) -> list[dict[str, str]]:
    """The CSV file's rows (header ``email,name``); a missing file is permanent, not worth retrying."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            return [
                {"email": (r.get("email") or "").strip(), "name": (r.get("name") or "").strip()}
                for r in csv.DictReader(f)
            ]
    except FileNotFoundError:
        raise Discard(f"the export {path} does not exist") from None


def validate_rows(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Split rows into valid ones (first occurrence of each email) and rejected ones with the reason."""
    valid: list[dict[str, str]] = []
    rejected: list[dict[str, str]] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            parsed = SubscriberRow(email=row["email"].lower(), name=row["name"])
        except ValidationError as exc:
            field = ".".join(str(p) for p in exc.errors()[0]["loc"])
            rejected.append({"line": str(number), "email": row["email"], "reason": f"invalid {field}"})
            continue
        if parsed.email in seen:
            rejected.append({"line": str(number), "email": parsed.email, "reason": "duplicate in file"})
            continue
        seen.add(parsed.email)
        valid.append(parsed.model_dump())
    return valid, rejected


def store_batch(batch: list[dict[str, str]]) -> int:
    """Insert the batch's new subscribers in one transaction; returns how many were new."""
    emails = [row["email"] for row in batch]
    with engine().begin() as conn:
        existing = set(conn.execute(sa.select(subscribers.c.email).where(subscribers.c.email.in_(emails))).scalars())
        new = [row for row in batch if row["email"] not in existing]
        if new:
            conn.execute(subscribers.insert(), new)
    return len(new)


@job(name="newsletter.import_subscribers", schema=ImportArgs, max_retries=3, backoff="linear", queue="imports")
class ImportSubscribers(BaseJob[ImportArgs]):
    """Import subscribers from a CSV export, reporting progress and resuming from its last checkpoint."""

    def perform(self, args: ImportArgs) -> dict[str, Any]:
        done = self.last_checkpoint
        state: dict[str, Any] = {} if done is None else dict(done.data)
        stage = None if done is None else done.stage
        if stage == "report":
            return dict(state["summary"])  # finished; only the return was interrupted

        if stage is None:
            self.progress(0, stage="fetch", message=f"reading {Path(args.path).name}")
            state = {"rows": read_rows(args.path)}
            self.checkpoint("fetch", state)
            stage = "fetch"

        if stage == "fetch":
            self.progress(10, stage="validate", message=f"checking {len(state['rows'])} rows")
            valid, rejected = validate_rows(state["rows"])
            state = {"valid": valid, "rejected": rejected, "stored": 0, "added": 0}
            self.checkpoint("validate", state)

        valid = state["valid"]
        while state["stored"] < len(valid):
            if self.cancel_token.wait(args.throttle if state["stored"] else 0):
                self.cancel_token.raise_if_cancelled()  # paused or cancelled: the last checkpoint stands
            batch = valid[state["stored"] : state["stored"] + args.batch_size]
            state["added"] += store_batch(batch)
            state["stored"] += len(batch)
            self.checkpoint("store", state)
            self.progress(
                20 + 75 * state["stored"] / len(valid),
                stage="store",
                message=f"{state['stored']}/{len(valid)} rows",
                added=state["added"],
            )

        summary = {
            "path": args.path,
            "rows": len(valid) + len(state["rejected"]),
            "added": state["added"],
            "already_subscribed": len(valid) - state["added"],
            "rejected": len(state["rejected"]),
        }
        self.progress(95, stage="report", message=f"{summary['added']} added, {summary['rejected']} rejected")
        lines = [f"- line {r['line']}: {r['email'] or '(empty)'}: {r['reason']}" for r in state["rejected"]]
        body = (
            f"Imported {Path(args.path).name}: {summary['added']} new subscribers, "
            f"{summary['already_subscribed']} already subscribed, {summary['rejected']} rejected.\n" + "\n".join(lines)
        )
        send(args.notify, f"Import of {Path(args.path).name}", body)
        self.checkpoint("report", {"summary": summary})
        self.progress(100, stage="report", message="done")
        return summary

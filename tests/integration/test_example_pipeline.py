"""The example app's subscriber import: it completes, and resumes from its checkpoint after a pause."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from example_app.db import engine, outbox, subscribers
from example_app.pipeline import ImportSubscribers
from jobkit import JobFailed, JobQueue
from tests.observe import EventLog

NEW = 40


@pytest.fixture
def app_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """The example app's tables on the test database (the app reads JOBKIT_DATABASE_URL once, cached)."""
    monkeypatch.setenv("JOBKIT_DATABASE_URL", db_url)
    engine.cache_clear()
    eng = engine()
    with eng.begin() as conn:
        conn.execute(subscribers.insert().values(email="ada@example.com", name="Ada"))
    yield eng
    eng.dispose()
    engine.cache_clear()


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A CSV export: NEW new readers, one existing subscriber, two bad rows and a duplicate."""
    path = tmp_path / "export.csv"
    lines = ["email,name", *(f"reader{i}@example.org,Reader {i}" for i in range(NEW))]
    lines += ["ADA@example.com,Ada", "not-an-email,Bob", "carol@example.org,", "reader3@example.org,Reader 3"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def expected(path: Path) -> dict[str, Any]:
    return {"path": str(path), "rows": NEW + 4, "added": NEW, "already_subscribed": 1, "rejected": 3}


def emails(eng: sa.Engine) -> list[str]:
    with eng.connect() as conn:
        return sorted(conn.execute(sa.select(subscribers.c.email)).scalars())


def all_emails() -> list[str]:
    return sorted(["ada@example.com", *(f"reader{i}@example.org" for i in range(NEW))])


def test_import_runs_every_stage_and_stores_the_valid_rows(queue: JobQueue, app_db: sa.Engine, export: Path) -> None:
    """fetch, validate, store and report run in order; valid new rows are stored, the others counted."""
    queue.start()
    handle = ImportSubscribers.perform_later(path=str(export), batch_size=8)
    stages: list[str] = []
    for event in handle.stream(timeout=30):
        if event.stage and (not stages or stages[-1] != event.stage):
            stages.append(event.stage)
    assert stages == ["fetch", "validate", "store", "report"]
    assert handle.result(timeout=5) == expected(export)
    assert emails(app_db) == all_emails()
    with app_db.connect() as conn:
        [body] = conn.execute(sa.select(outbox.c.body)).scalars()
    assert "40 new subscribers, 1 already subscribed, 3 rejected" in body
    assert "line 43: not-an-email: invalid email" in body


def test_paused_import_resumes_from_its_checkpoint(
    queue: JobQueue, app_db: sa.Engine, events: EventLog, export: Path
) -> None:
    """Paused mid-store, the import keeps its checkpoint; resumed, it finishes without fetching again."""
    queue.start()
    handle = ImportSubscribers.perform_later(path=str(export), batch_size=5, throttle=0.2)
    events.wait_for(handle.id, "progress", stage="store")
    assert handle.pause() == "pausing"
    events.wait_for(handle.id, "paused")
    info = handle.refresh()
    assert (info.status, info.attempt, info.errors) == ("paused", 0, [])
    assert info.checkpoint is not None and info.checkpoint["stage"] == "store"
    stored = info.checkpoint["data"]["stored"]
    assert 0 < stored < NEW + 1
    assert len(emails(app_db)) == 1 + stored  # Ada was there already; she comes last in the export
    export.unlink()  # the export is gone by the time the import resumes: it must not need it again
    assert handle.resume() == "pending"
    assert handle.result(timeout=30) == expected(export)
    assert emails(app_db) == all_emails()
    progress = handle.progress()
    assert progress is not None and progress["stages"] == ["store", "report"]


def test_missing_export_fails_at_once(queue: JobQueue, app_db: sa.Engine, tmp_path: Path) -> None:
    """A missing export is a permanent error: the job fails on its first attempt, retries unspent."""
    handle = ImportSubscribers.perform_later(path=str(tmp_path / "nowhere.csv"))
    assert queue.drain() == 1
    with pytest.raises(JobFailed) as failure:
        handle.result(timeout=5)
    assert [e["type"] for e in failure.value.errors] == ["Discard"]
    assert handle.refresh().attempt == 1

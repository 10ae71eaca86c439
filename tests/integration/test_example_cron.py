"""The example app's nightly digest: declared with cron=..., fired once a night, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import jobkit
from example_app.db import engine, outbox, subscribers
from example_app.jobs import NightlyDigest
from jobkit import FakeClock, JobQueue
from tests.conftest import FAST


@pytest.fixture
def app_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """The example app's tables on the test database, with two subscribers."""
    monkeypatch.setenv("JOBKIT_DATABASE_URL", db_url)
    engine.cache_clear()
    eng = engine()
    with eng.begin() as conn:
        conn.execute(
            subscribers.insert(), [{"email": "ada@example.com", "name": "Ada"}, {"email": "b@x.org", "name": "B"}]
        )
    yield eng
    eng.dispose()
    engine.cache_clear()


def test_the_nightly_digest_runs_once_a_night(db_url: str, app_db: sa.Engine) -> None:
    """Ticking every 10 minutes for two days sends two digests, each at 02:00 Berlin (01:00 UTC in winter)."""
    start = datetime(2026, 12, 7, 12, tzinfo=UTC)
    clock = FakeClock(start)
    queue = jobkit.configure(database_url=db_url, clock=clock, **FAST)
    try:
        assert NightlyDigest.job_type().options.recurrence is not None
        for step in range(1, 6 * 48 + 1):
            clock.set(start + timedelta(minutes=10 * step))
            queue.scheduler.run_once()
            queue.drain()
        digests = queue.jobs(name="newsletter.nightly_digest")
        assert sorted(j.run_at.strftime("%d %H:%M") for j in digests if j.run_at) == ["08 01:00", "09 01:00"]
        assert {j.status for j in digests} == {"completed"}
        with app_db.connect() as conn:
            bodies = conn.execute(sa.select(outbox.c.body).where(outbox.c.subject == "Nightly digest")).scalars().all()
        assert bodies == ["2 subscribers tonight.", "2 subscribers tonight."]
    finally:
        queue.close()
        JobQueue.set_instance(None)

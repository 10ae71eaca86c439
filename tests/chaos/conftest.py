"""Fixtures for the chaos tests: a cluster of real worker processes on the test database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import Cluster


@pytest.fixture
def cluster(db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Worker processes on ``db_url`` (SQLite file or PostgreSQL schema); whatever is left is killed afterwards.

    On PostgreSQL the workers' connections carry an application name of their own, so a
    test can terminate exactly those backends and nobody else's.
    """
    if db_url.startswith("postgresql"):
        db_url += f"&application_name=jobkit_chaos_{uuid.uuid4().hex[:10]}"
    workers = Cluster(db_url, tmp_path)
    try:
        yield workers
    finally:
        workers.close()

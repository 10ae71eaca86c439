"""No dashboard page plans a sequential scan of the jobs table on PostgreSQL (the 1M-row requirement's check).

Every statement a page runs is captured as the driver sends it, then EXPLAINed on the same
database with sequential scans priced out (``enable_seqscan = off``): a plan that still reads
``jobkit_jobs`` sequentially has no index to use at all, whatever the table's size. The grouped
counts behind ``queue.stats()`` are the one known exception, listed here until they are served
from a counter table (see the dashboard's benchmark in docs/benchmarks.md when it lands).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

import jobkit
import jobkit.dashboard
from jobkit import JobQueue
from tests.conftest import FAST, drop_pg_schema, make_pg_url, require_pg
from tests.dashboard_jobs import Mail

#: Statements known to scan the whole jobs table: the grouped counts of queue.stats().
KNOWN_FULL_SCANS = ("SELECT status, queue, name, COUNT(*) FROM jobkit_jobs GROUP BY status, queue, name",)
AUTH = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}


@pytest.fixture
def pg_queue() -> Iterator[JobQueue]:
    """A queue on a PostgreSQL schema of its own."""
    require_pg()
    url, schema = make_pg_url()
    queue = jobkit.configure(database_url=url, **FAST)
    try:
        yield queue
    finally:
        queue.close()
        JobQueue.set_instance(None)
        drop_pg_schema(schema)


def captured_statements(queue: JobQueue, paths: list[str]) -> list[tuple[str, Any]]:
    """Every jobs-table statement the store runs while the dashboard renders ``paths``."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "jobkit_jobs" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    engines = queue.store.engines  # type: ignore[attr-defined]
    targets = {id(e): e for e in (engines.main, engines.single)}.values()
    for engine in targets:
        sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with TestClient(jobkit.dashboard.app(queue, user="u", password="p"), headers=AUTH) as client:
            for path in paths:
                assert client.get(path).status_code == 200, path
    finally:
        for engine in targets:
            sa.event.remove(engine, "before_cursor_execute", capture)
    return seen


def test_no_page_plans_a_sequential_scan_of_jobs(pg_queue: JobQueue) -> None:
    """Overview, job list (filtered and paged), job, running, queues and workers: index or primary-key plans only."""
    handles = Mail.perform_all_later([{"to": f"u{i}@b.c"} for i in range(120)])
    paths = [
        "/",
        "/jobs",
        f"/jobs?before={handles[60].id}",
        "/jobs?state=failed&type=dash.mail&q=oops",
        f"/jobs/{handles[0].id}",
        "/running",
        "/queues",
        "/workers",
        "/audit",
    ]
    statements = captured_statements(pg_queue, paths)
    assert len(statements) >= len(paths)
    engine = pg_queue.store.engines.main  # type: ignore[attr-defined]
    scans = []
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            if any(known in " ".join(statement.split()) for known in KNOWN_FULL_SCANS):
                continue
            plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
            if "Seq Scan on jobkit_jobs" in plan:
                scans.append(f"{statement}\n{plan}")
    assert not scans, "\n\n".join(scans)

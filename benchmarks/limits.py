"""The physical limit: what the database commits at all, measured from the same language in the same run.

- ``insert-loop``: a plain Python loop of single-row INSERT + COMMIT (sqlite3 in WAL mode with the same
  pragmas jobkit uses; psycopg in autocommit on PostgreSQL), one client.
- ``pgbench-c1`` / ``pgbench-c10``: pgbench running a single-row insert script with 1 and 10 clients.
- ``claim-loop``: the least a worker must do per job, with nothing else: N pending jobs in jobkit's own
  ``jobkit_jobs`` table (made by jobkit's migrations), then one client that claims a batch of
  :data:`CLAIM_BATCH` in plain SQL and completes the batch in one more statement, until none is left
  (sqlite3 or psycopg directly, no jobkit code on the path). W2 reads as a fraction of it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import common, libs

DATABASE = "bench_limit"

#: The worker's claim size in W2: concurrency 10 plus a full prefetch buffer, which jobkit caps at
#: the concurrency (``Worker._claim_room`` / ``_prefetch_target`` in jobkit/_runtime/worker.py). In
#: a W2 drain of 10,000 jobs nearly every claim asks for (and gets) 20; only the first ones ask for
#: fewer, while the buffer grows.
CLAIM_BATCH = 20
CLAIM_WORKER = "raw-loop"


def insert_loop(db: str, n: int, workdir: Path) -> float:
    """Rows per second of one client inserting and committing one row at a time."""
    payload = '{"n": 1, "t": 0.0}'
    if db == "sqlite":
        conn = sqlite3.connect(workdir / "limit.sqlite3", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT, created REAL)")
        start = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (payload, created) VALUES (?, ?)", (payload, time.time()))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        return n / elapsed
    common.recreate_pg_database(DATABASE)
    try:
        with psycopg.connect(common.pg_conninfo(DATABASE), autocommit=True) as pg:
            pg.execute("CREATE TABLE t (id bigserial PRIMARY KEY, payload text, created float8)")
            start = time.perf_counter()
            for _ in range(n):
                pg.execute("INSERT INTO t (payload, created) VALUES (%s, %s)", (payload, time.time()))
            elapsed = time.perf_counter() - start
        return n / elapsed
    finally:
        common.drop_pg_database(DATABASE)


def pgbench(clients: int, seconds: int) -> dict[str, Any]:
    """Transactions per second of pgbench running one single-row insert per transaction."""
    common.recreate_pg_database(DATABASE)
    try:
        with psycopg.connect(common.pg_conninfo(DATABASE), autocommit=True) as pg:
            pg.execute("CREATE TABLE t (id bigserial PRIMARY KEY, payload text, created float8)")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write("INSERT INTO t (payload, created) VALUES ('{\"n\": 1}', extract(epoch from now()));\n")
        cmd = [
            "pgbench", "-n", "-h", common.PG_HOST, "-p", str(common.PG_PORT), "-U", common.PG_USER,
            "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds), "-f", script.name, DATABASE,
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
        Path(script.name).unlink()
        match = re.search(r"tps = ([0-9.]+)", out)
        if match is None:
            raise RuntimeError(f"pgbench printed no tps:\n{out}")
        return {"value": float(match.group(1)), "unit": "inserts/s", "note": f"{clients} client(s), {seconds}s"}
    finally:
        common.drop_pg_database(DATABASE)


# The claim and the completion keep the shape of jobkit's own (claim order, lease bump, the worker
# and status check on completion) without its extras (the stager, job-type, queue and pause filters;
# per-row lease fencing; results; notifications).
PG_FILL = """
    INSERT INTO jobkit_jobs (name, queue, priority, status, staged, args, run_at, created_at)
    SELECT 'bench.record', 'default', 0, 'pending', TRUE, '{"n":' || g || ',"t":0.0,"s":0.0}', %(now)s, %(now)s
      FROM generate_series(1, %(count)s) AS g
"""
PG_CLAIM = """
    UPDATE jobkit_jobs
       SET status = 'running', attempt = attempt + 1, lease = lease + 1, worker_id = %(worker)s,
           started_at = %(now)s, updated_at = %(now)s
     WHERE id IN (SELECT id FROM jobkit_jobs WHERE status = 'pending' AND staged AND run_at <= %(now)s
                   ORDER BY priority, run_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING id
"""
PG_COMPLETE = """
    UPDATE jobkit_jobs SET status = 'completed', result = 'null', finished_at = %(now)s, updated_at = %(now)s
     WHERE id = ANY(%(ids)s) AND worker_id = %(worker)s AND status = 'running'
"""
SQLITE_FILL = """
    WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :count)
    INSERT INTO jobkit_jobs (name, queue, priority, status, staged, args, run_at, created_at)
    SELECT 'bench.record', 'default', 0, 'pending', TRUE, '{"n":' || g || ',"t":0.0,"s":0.0}', :now, :now FROM s
"""
SQLITE_CLAIM = """
    UPDATE jobkit_jobs
       SET status = 'running', attempt = attempt + 1, lease = lease + 1, worker_id = :worker,
           started_at = :now, updated_at = :now
     WHERE id IN (SELECT id FROM jobkit_jobs WHERE status = 'pending' AND staged AND run_at <= :now
                   ORDER BY priority, run_at, id LIMIT :limit)
    RETURNING id
"""
SQLITE_COMPLETE = """
    UPDATE jobkit_jobs SET status = 'completed', result = 'null', finished_at = :now, updated_at = :now
     WHERE id IN (SELECT value FROM json_each(:ids)) AND worker_id = :worker AND status = 'running'
"""


def claim_loop(db: str, n: int, workdir: Path) -> float:
    """Jobs per second of one client claiming CLAIM_BATCH jobs at a time and completing each batch."""
    # The jobkit adapter makes the storage as for W2 (jobkit's migrations); it is loaded by name, so
    # that this module, imported by every case, does not import jobkit into the peers' environment.
    jobkit_storage = libs.load("jobkit", db, workdir)
    jobkit_storage.setup()
    jobkit_storage.close()
    try:
        if db == "sqlite":
            return _sqlite_claim_loop(jobkit_storage.sqlite_path, n)
        return _pg_claim_loop(jobkit_storage.pg_database, n)
    finally:
        jobkit_storage.teardown()


def _pg_claim_loop(database: str, n: int) -> float:
    with psycopg.connect(common.pg_conninfo(database), autocommit=True) as pg:
        pg.execute(PG_FILL, {"now": time.time(), "count": n})
        pg.execute("VACUUM (ANALYZE) jobkit_jobs")
        done = 0
        start = time.perf_counter()
        while True:
            claimed = pg.execute(PG_CLAIM, {"worker": CLAIM_WORKER, "now": time.time(), "limit": CLAIM_BATCH})
            ids = [row[0] for row in claimed.fetchall()]
            if not ids:
                break
            pg.execute(PG_COMPLETE, {"ids": ids, "worker": CLAIM_WORKER, "now": time.time()})
            done += len(ids)
        elapsed = time.perf_counter() - start
    return _checked(done, n) / elapsed


def _sqlite_claim_loop(path: Path, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # The pragmas jobkit sets on each of its connections (jobkit/_store/engine.py).
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(SQLITE_FILL, {"now": time.time(), "count": n})
        done = 0
        start = time.perf_counter()
        while True:
            # BEGIN IMMEDIATE holds the write lock from the start, as jobkit's claim does.
            conn.execute("BEGIN IMMEDIATE")
            claimed = conn.execute(SQLITE_CLAIM, {"worker": CLAIM_WORKER, "now": time.time(), "limit": CLAIM_BATCH})
            ids = [row[0] for row in claimed.fetchall()]
            conn.execute("COMMIT")
            if not ids:
                break
            done_now = {"ids": json.dumps(ids), "worker": CLAIM_WORKER, "now": time.time()}
            conn.execute(SQLITE_COMPLETE, done_now)
            done += len(ids)
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return _checked(done, n) / elapsed


def _checked(done: int, n: int) -> int:
    if done != n:
        raise RuntimeError(f"the claim loop completed {done} of {n} jobs")
    return done

"""W7's history: a jobkit jobs table that already holds 1,000,000 finished and 100,000 future rows.

The rows are written with plain SQL into the real schema, which jobkit's own migrations create
(``jobkit.JobQueue(...)`` with auto-migration on, as the W2 case's producer does), so they go
through every index a real table has:

- finished rows: 96% ``completed`` (result ``null``) and 4% ``failed`` (one error entry with a
  traceback), each with ``worker_id``, ``started_at``, ``finished_at`` and one attempt, created one
  after another over the three days before the seed; a fifth of them belong to another job type;
- future rows: ``pending`` (jobkit has no separate "scheduled" state: a job is scheduled when its
  ``run_at`` lies ahead), of the benchmark's own job type, queue and the default priority, due
  between 2 and 62 days after the seed.

Seeding takes tens of seconds, so the seeded database is built once and cached: a SQLite file in
``benchmarks/.cache/`` and a PostgreSQL database ``bench_w7_seed_<key>`` that each case copies
(``CREATE DATABASE ... TEMPLATE``). The key hashes jobkit's migration files and this seed's
version, so a schema change rebuilds it; a cache older than :data:`MAX_AGE` is rebuilt too, so the
finished rows stay inside the default retention (7 days, nothing to prune) and the future rows stay
in the future. PostgreSQL's copy is vacuumed and analysed, as autovacuum would leave a table of
that age; SQLite's is not analysed, as jobkit never runs ANALYZE.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import time
from pathlib import Path

import psycopg

import jobkit
from benchmarks import common

FINISHED = 1_000_000
FUTURE = 100_000
#: bump when the rows written below change, so cached seeds are rebuilt
SEED_VERSION = "2"
#: a seed older than this is rebuilt (see the module docstring)
MAX_AGE = 24 * 3600.0

CACHE = Path(__file__).resolve().parent / ".cache"
MIGRATIONS = Path(jobkit.__file__).resolve().parent / "_store" / "migrations" / "versions"
SEED_PREFIX = "bench_w7_seed_"

FINISHED_SPAN = 3 * 24 * 3600.0  # finished rows were created over the three days before the seed ...
FINISHED_END = 60.0  # ... up to a minute before it
FUTURE_START = 2 * 24 * 3600.0  # future rows fall due from two days after the seed ...
FUTURE_SPAN = 60 * 24 * 3600.0  # ... over sixty days
JOB_NAME = "bench.record"  # the benchmark job (benchmarks/libs/jobkit_lib.py)
OTHER_NAME = "bench.other"
TRACEBACK = (
    'Traceback (most recent call last):\\n  File \\"/app/jobs.py\\", line 12, in perform\\n'
    '    raise ValueError(\\"boom\\")\\nValueError: boom\\n'
)

COLUMNS = (
    "name, queue, priority, status, args, run_at, created_at, attempt, max_retries, worker_id, "
    "started_at, finished_at, result, errors, crashes, lease, updated_at"
)

# One row per g; `at` is when the job was created (and due); every 25th failed, every 5th another type.
PG_FINISHED = f"""
    INSERT INTO jobkit_jobs ({COLUMNS})
    SELECT CASE WHEN mod(g, 5) = 1 THEN %(other)s ELSE %(name)s END, 'default', 0,
           CASE WHEN mod(g, 25) = 0 THEN 'failed' ELSE 'completed' END,
           '{{"n":' || g || ',"t":' || at || ',"s":0.0}}', at, at, 1, 0, 'seed-worker-' || mod(g, 4),
           at + 0.002, at + 0.003,
           CASE WHEN mod(g, 25) = 0 THEN NULL ELSE 'null' END,
           CASE WHEN mod(g, 25) = 0 THEN '[{{"attempt": 1, "type": "ValueError", "message": "boom", '
                || '"traceback": "' || %(traceback)s || '", "at": ' || (at + 0.003) || '}}]' END,
           0, 1, at + 0.003
      FROM generate_series(1, %(count)s) AS g, LATERAL (SELECT %(start)s + g * %(step)s AS at) AS t
"""
PG_FUTURE = f"""
    INSERT INTO jobkit_jobs ({COLUMNS})
    SELECT %(name)s, 'default', 0, 'pending', '{{"n":' || -g || ',"t":' || %(now)s || ',"s":0.0}}',
           %(start)s + g * %(step)s, %(now)s - mod(g, 3600), 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL
      FROM generate_series(1, %(count)s) AS g
"""

# SQLite has no generate_series outside its shell: a recursive CTE counts instead.
SQLITE_FINISHED = f"""
    WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :count),
         t(g, at) AS (SELECT g, :start + g * :step FROM s)
    INSERT INTO jobkit_jobs ({COLUMNS})
    SELECT CASE WHEN g % 5 = 1 THEN :other ELSE :name END, 'default', 0,
           CASE WHEN g % 25 = 0 THEN 'failed' ELSE 'completed' END,
           '{{"n":' || g || ',"t":' || at || ',"s":0.0}}', at, at, 1, 0, 'seed-worker-' || (g % 4),
           at + 0.002, at + 0.003,
           CASE WHEN g % 25 = 0 THEN NULL ELSE 'null' END,
           CASE WHEN g % 25 = 0 THEN '[{{"attempt": 1, "type": "ValueError", "message": "boom", '
                || '"traceback": "' || :traceback || '", "at": ' || (at + 0.003) || '}}]' END,
           0, 1, at + 0.003
      FROM t
"""
SQLITE_FUTURE = f"""
    WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :count)
    INSERT INTO jobkit_jobs ({COLUMNS})
    SELECT :name, 'default', 0, 'pending', '{{"n":' || -g || ',"t":' || :now || ',"s":0.0}}',
           :start + g * :step, :now - (g % 3600), 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL
      FROM s
"""


def seed_key() -> str:
    """What the cached seed depends on: jobkit's migrations, this seed's version and its row counts."""
    digest = hashlib.sha256(f"{SEED_VERSION} {FINISHED} {FUTURE}".encode())
    for path in sorted(MIGRATIONS.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _params(now: float) -> tuple[dict[str, object], dict[str, object]]:
    start = now - FINISHED_SPAN
    finished = {
        "count": FINISHED,
        "start": start,
        "step": (FINISHED_SPAN - FINISHED_END) / FINISHED,
        "name": JOB_NAME,
        "other": OTHER_NAME,
        "traceback": TRACEBACK,
    }
    future = {"count": FUTURE, "start": now + FUTURE_START, "step": FUTURE_SPAN / FUTURE, "name": JOB_NAME, "now": now}
    return finished, future


# -- SQLite --------------------------------------------------------------------------------------


def place_sqlite(target: Path) -> str:
    """Copy the seeded SQLite database to ``target`` (building it first if needed); returns a note."""
    cached = CACHE / f"w7-{seed_key()}.sqlite3"
    note = "cached seed"
    if not cached.exists() or time.time() - cached.stat().st_mtime > MAX_AGE:
        note = f"seeded in {_build_sqlite(cached):.0f}s"
    shutil.copyfile(cached, target)
    return note


def _build_sqlite(cached: Path) -> float:
    started = time.perf_counter()
    CACHE.mkdir(exist_ok=True)
    for old in CACHE.glob("w7-*.sqlite3*"):
        old.unlink()
    building = cached.with_suffix(".building")
    building.unlink(missing_ok=True)
    jobkit.JobQueue(database_url=f"sqlite:///{building}").close()  # jobkit's migrations make the schema
    finished, future = _params(time.time())
    conn = sqlite3.connect(building, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(SQLITE_FINISHED, finished)
        conn.execute(SQLITE_FUTURE, future)
        conn.execute("COMMIT")
        # Fold the WAL into the file, so the one file copied is the whole database.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    building.replace(cached)
    return time.perf_counter() - started


# -- PostgreSQL ----------------------------------------------------------------------------------


def place_postgres(database: str) -> str:
    """Make ``database`` a fresh copy of the seeded PostgreSQL database; returns a note."""
    seed = SEED_PREFIX + seed_key()
    note = "cached seed"
    with psycopg.connect(common.pg_conninfo(common.PG_ADMIN_DB), autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (seed,)
        ).fetchone()
        seeded_at = float(row[0]) if row and row[0] else None
        if seeded_at is None or time.time() - seeded_at > MAX_AGE:
            note = f"seeded in {_build_postgres(admin, seed):.0f}s"
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        # FILE_COPY copies the files at a checkpoint instead of WAL-logging every block (PostgreSQL 15+).
        admin.execute(f'CREATE DATABASE "{database}" TEMPLATE "{seed}" STRATEGY FILE_COPY')
    return note


def _build_postgres(admin: psycopg.Connection, seed: str) -> float:
    started = time.perf_counter()
    old = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (SEED_PREFIX + "%",)).fetchall()
    for (name,) in old:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    building = seed + "_building"
    admin.execute(f'CREATE DATABASE "{building}"')
    jobkit.JobQueue(database_url=common.pg_url(building, "postgresql+psycopg")).close()
    now = time.time()
    finished, future = _params(now)
    with psycopg.connect(common.pg_conninfo(building), autocommit=True) as conn:
        with conn.transaction():
            conn.execute(PG_FINISHED, finished)
            conn.execute(PG_FUTURE, future)
        conn.execute("VACUUM (ANALYZE) jobkit_jobs")
    admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{seed}"')
    admin.execute(f"COMMENT ON DATABASE \"{seed}\" IS '{now!r}'")
    return time.perf_counter() - started

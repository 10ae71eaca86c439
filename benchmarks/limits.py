"""The physical limit: what the database commits at all, measured from the same language in the same run.

- ``insert-loop``: a plain Python loop of single-row INSERT + COMMIT (sqlite3 in WAL mode with the same
  pragmas jobkit uses; psycopg in autocommit on PostgreSQL), one client.
- ``pgbench-c1`` / ``pgbench-c10``: pgbench running a single-row insert script with 1 and 10 clients.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import common

DATABASE = "bench_limit"


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

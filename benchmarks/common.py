"""Helpers shared by the harness, the cases and the worker children (standard library and psycopg only)."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("BENCH_PG_ADMIN_DB", "postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def pg_conninfo(database: str) -> str:
    """A libpq connection string for ``database`` on the benchmark server."""
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={database}"


def pg_url(database: str, driver: str = "postgresql") -> str:
    """A URL for ``database`` (``driver`` may be ``postgresql+psycopg`` for SQLAlchemy users)."""
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def pg_reachable() -> bool:
    """Whether the benchmark PostgreSQL server answers."""
    try:
        with psycopg.connect(pg_conninfo(PG_ADMIN_DB), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def redis_reachable() -> bool:
    """Whether Redis accepts a TCP connection (checked without a Redis client)."""
    host_port = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def recreate_pg_database(name: str) -> None:
    """Drop (forcibly) and create an empty database, so each library and run starts from nothing."""
    with psycopg.connect(pg_conninfo(PG_ADMIN_DB), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    """Drop a benchmark database (used in clean-up)."""
    with psycopg.connect(pg_conninfo(PG_ADMIN_DB), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_transactions(name: str) -> int:
    """Committed plus rolled-back transactions of one database so far (pg_stat_database).

    Each statement a worker runs outside an explicit transaction is one transaction, so this counts
    a worker's queries closely enough for the idle-cost workload (W5).
    """
    with psycopg.connect(pg_conninfo(PG_ADMIN_DB), autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


def redis_commands() -> int:
    """Commands processed by the Redis server so far (INFO stats)."""
    host_port = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    with socket.create_connection((host, int(port or 6379)), timeout=2) as sock:
        sock.sendall(b"INFO stats\r\n")
        data = b""
        while b"total_commands_processed" not in data or not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":", 1)[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    for child in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence chatty library loggers in worker children."""
    import logging

    previous = logging.root.level
    logging.basicConfig(level=logging.WARNING)
    try:
        yield
    finally:
        logging.root.setLevel(previous)

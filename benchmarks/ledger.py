"""What every benchmark job does: append one line ``n t_enqueued t_start t_end`` to its process's ledger.

The ledger file is named by ``BENCH_LEDGER`` in the worker child's environment; one ``os.write`` on an
``O_APPEND`` descriptor per job costs a few microseconds, the same for every library, and lets the
harness time the run from the outside and spot a job that ran twice.
"""

from __future__ import annotations

import os
import time

_fd: int | None = None


def _ledger() -> int:
    global _fd
    if _fd is None:
        _fd = os.open(os.environ["BENCH_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _fd


def record(n: int, t: float, s: float = 0.0) -> None:
    """The body of a benchmark job: sleep ``s`` seconds (W4 only) and log the start and end."""
    start = time.time()
    if s:
        time.sleep(s)
    os.write(_ledger(), f"{n} {t!r} {start!r} {time.time()!r}\n".encode())


async def record_async(n: int, t: float, s: float = 0.0) -> None:
    """The async twin of :func:`record`, for libraries whose workers run coroutines."""
    import asyncio

    start = time.time()
    if s:
        await asyncio.sleep(s)
    os.write(_ledger(), f"{n} {t!r} {start!r} {time.time()!r}\n".encode())


def mark_ready() -> None:
    """Written by a worker child once everything is imported and built, just before it starts working."""
    os.write(_ledger(), f"ready {os.getpid()} {time.time()!r} 0\n".encode())


def read(path: str) -> list[tuple[int, float, float, float]]:
    """The job lines of one ledger file."""
    rows = []
    try:
        with open(path) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 4 and parts[0] != "ready":
                    rows.append((int(parts[0]), float(parts[1]), float(parts[2]), float(parts[3])))
    except FileNotFoundError:
        pass
    return rows


def is_ready(path: str) -> bool:
    """Whether the worker child writing ``path`` has marked itself ready."""
    try:
        with open(path) as handle:
            return any(line.startswith("ready ") for line in handle)
    except FileNotFoundError:
        return False

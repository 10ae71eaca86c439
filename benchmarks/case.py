"""One library, one database, one workload: ``python -m benchmarks.case ...`` prints one JSON line.

Workloads (see shared/BENCHMARKS.md): W1 one-by-one enqueue, W1b bulk enqueue, W2 drain with one worker
process at concurrency 10, W2p2/W2p4 the same with 2 and 4 processes, W3 enqueue-to-start latency on an
idle worker, W4c10/W4c50 10 ms sleeping jobs, W5 idle cost then memory under load, W7-W2/W7-W3 the same
as W2/W3 with 1,000,000 finished and 100,000 future rows already in the table (benchmarks/history.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import common, ledger, libs, limits

WORKER_CONCURRENCY = 10


class Workers:
    """Worker children of one case, each with a ledger file of its own."""

    def __init__(self, lib: str, db: str, workdir: Path, processes: int, concurrency: int) -> None:
        self.workdir = workdir
        self.ledgers = [str(workdir / f"ledger-{i}.txt") for i in range(processes)]
        self._offsets = [0] * processes
        self._lines = 0
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.worker", lib, db, str(workdir), str(concurrency), path],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(workdir / f"worker-{i}.log", "w"),  # noqa: SIM115 - closed with the process
            )
            for i, path in enumerate(self.ledgers)
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Wait until every child is built and ready, then let them all go at once."""
        end = time.monotonic() + timeout
        while not all(ledger.is_ready(p) for p in self.ledgers):
            self._check_alive()
            if time.monotonic() > end:
                raise TimeoutError("worker children did not get ready")
            time.sleep(0.01)
        (self.workdir / "go").touch()

    def _check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                log = (self.workdir / f"worker-{i}.log").read_text()[-3000:]
                raise RuntimeError(f"worker child exited with {proc.returncode}:\n{log}")

    def done_count(self) -> int:
        """Job lines written so far across all ledgers (read incrementally)."""
        for i, path in enumerate(self.ledgers):
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
                handle.seek(self._offsets[i])
                chunk = handle.read()
                cut = chunk.rfind(b"\n") + 1
                self._offsets[i] += cut
                self._lines += chunk[:cut].count(b"\n") - chunk[:cut].count(b"ready ")
        return self._lines

    def wait_for(self, count: int, timeout: float, every: float = 0.01) -> None:
        """Block until ``count`` job lines exist."""
        end = time.monotonic() + timeout
        while self.done_count() < count:
            self._check_alive()
            if time.monotonic() > end:
                raise TimeoutError(f"only {self.done_count()} of {count} jobs ran within {timeout:.0f}s")
            time.sleep(every)

    def rows(self) -> list[tuple[int, float, float, float]]:
        """Every job line of every ledger."""
        return [row for path in self.ledgers for row in ledger.read(path)]

    def stop(self) -> None:
        """SIGTERM, a short grace, then SIGKILL."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 5
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, end - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def items(n: int, sleep: float = 0.0, start: int = 0) -> list[tuple[int, float, float]]:
    now = time.time()
    return [(i, now, sleep) for i in range(start, start + n)]


def fill(adapter: Any, batch: list[tuple[int, float, float]]) -> None:
    """Put jobs in place before a drain (bulk when the library can, in chunks of 1,000)."""
    if adapter.bulk:
        for i in range(0, len(batch), 1000):
            adapter.enqueue_many(batch[i : i + 1000])
    else:
        for item in batch:
            adapter.enqueue_one(item)


def drain_rate(rows: list[tuple[int, float, float, float]]) -> tuple[float, float]:
    """(jobs/s from the first start to the last end, elapsed seconds)."""
    first = min(r[2] for r in rows)
    last = max(r[3] for r in rows)
    elapsed = max(last - first, 1e-9)
    return len(rows) / elapsed, elapsed


def run_limit(db: str, workload: str, n: int, quick: bool, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"lib": "limit", "db": db, "workload": workload}
    if workload == "insert-loop":
        result.update(value=limits.insert_loop(db, n, workdir), unit="inserts/s", note="1 client, Python")
    elif workload == "claim-loop":
        note = f"batches of {limits.CLAIM_BATCH} (the worker's claim in W2), 1 client, Python"
        result.update(value=limits.claim_loop(db, n, workdir), unit="jobs/s", note=note)
    else:
        clients = int(workload.removeprefix("pgbench-c"))
        result.update(limits.pgbench(clients, 2 if quick else 10))
    return result


def run_case(lib: str, db: str, workload: str, n: int, idle: float, settle: float, workdir: Path) -> dict[str, Any]:
    adapter = libs.load(lib, db, workdir)
    result: dict[str, Any] = {"lib": lib, "db": db, "workload": workload}
    notes = [adapter.note] if adapter.note else []
    # W7-W2 and W7-W3 are W2 and W3 on a table that already holds a history.
    with_history = workload.startswith("W7-")
    workload = workload.removeprefix("W7-")
    if with_history:
        notes.append(adapter.setup_with_history() + "; jobkit only, peers not seeded")
    else:
        adapter.setup()
    if notes:
        result["note"] = "; ".join(notes)
    workers: Workers | None = None
    try:
        if workload == "W1":
            adapter.enqueue_one((-1, time.time(), 0.0))  # connections open, caches warm
            batch = items(n)
            start = time.perf_counter()
            for item in batch:
                adapter.enqueue_one(item)
            result["value"] = n / (time.perf_counter() - start)
            result["unit"] = "jobs/s"
        elif workload == "W1b":
            if not adapter.bulk:
                result["skipped"] = "no bulk-enqueue API"
                return result
            adapter.enqueue_many(items(2, start=-2))
            batch = items(n)
            # The timed window is tens of milliseconds: a collection of garbage left by the set-up
            # (import, migrations) landing in it or not would decide the figure. Collect it first,
            # the same for every library.
            gc.collect()
            start = time.perf_counter()
            adapter.enqueue_many(batch)
            result["value"] = n / (time.perf_counter() - start)
            result["unit"] = "jobs/s"
        elif workload in ("W2", "W2p2", "W2p4", "W4c10", "W4c50"):
            processes = {"W2p2": 2, "W2p4": 4}.get(workload, 1)
            concurrency = {"W4c10": 10, "W4c50": 50}.get(workload, WORKER_CONCURRENCY)
            if adapter.max_concurrency is not None and concurrency > adapter.max_concurrency:
                result["note"] = (result.get("note", "") + f" concurrency {adapter.max_concurrency}").strip()
                concurrency = adapter.max_concurrency
            count = n // 10 if workload.startswith("W4") else n
            sleep = 0.01 if workload.startswith("W4") else 0.0
            fill(adapter, items(count, sleep))
            workers = Workers(lib, db, workdir, processes, concurrency)
            workers.start()
            workers.wait_for(count, timeout=max(120.0, count / 20))
            rows = workers.rows()
            rate, elapsed = drain_rate(rows)
            result.update(value=rate, unit="jobs/s", elapsed=elapsed)
            ran = Counter(r[0] for r in rows)
            result["duplicates"] = sum(1 for c in ran.values() if c > 1)
            result["missing"] = count - len(ran)
            if workload.startswith("W4"):
                result["ideal"] = concurrency / sleep
                result["of_ideal"] = rate / result["ideal"]
        elif workload == "W3":
            workers = Workers(lib, db, workdir, 1, WORKER_CONCURRENCY)
            workers.start()
            adapter.enqueue_one((-1, time.time(), 0.0))
            workers.wait_for(1, timeout=60)
            time.sleep(settle)  # the worker is idle again: no claim in flight, nothing queued
            tick = time.perf_counter()
            for i in range(200):
                tick += 0.02
                adapter.enqueue_one((i, time.time(), 0.0))
                time.sleep(max(0.0, tick - time.perf_counter()))
            workers.wait_for(201, timeout=60)
            latencies = [(r[2] - r[1]) * 1000 for r in workers.rows() if r[0] >= 0]
            result.update(
                value=common.percentile(latencies, 50),
                unit="ms",
                p50=common.percentile(latencies, 50),
                p95=common.percentile(latencies, 95),
                p99=common.percentile(latencies, 99),
            )
        elif workload == "W5":
            workers = Workers(lib, db, workdir, 1, WORKER_CONCURRENCY)
            workers.start()
            adapter.enqueue_one((-1, time.time(), 0.0))
            workers.wait_for(1, timeout=60)
            adapter.close()  # the producer's own connections must not count
            time.sleep(settle)  # statistics of the start-up flushed before counting
            pid = workers.procs[0].pid
            q0, rss0 = adapter.query_count(), common.rss_mb(pid)
            time.sleep(idle)
            q1, rss1 = adapter.query_count(), common.rss_mb(pid)
            fill(adapter, items(n, start=1))
            workers.wait_for(n + 1, timeout=max(120.0, n / 20))
            rss2 = common.rss_mb(pid)
            if q0 is not None and q1 is not None:
                result["value"] = max(0, q1 - q0 - (1 if db == "redis" else 0)) / idle
                result["unit"] = "queries/s idle"
            else:
                result["value"] = None
                result["unit"] = "queries/s idle (not measurable)"
            result.update(rss_idle_start=rss0, rss_idle_end=rss1, rss_after_load=rss2, idle_seconds=idle)
        else:
            raise ValueError(f"unknown workload {workload}")
        return result
    finally:
        if workers is not None:
            workers.stop()
        adapter.close()
        with contextlib.suppress(Exception):
            adapter.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.lib}-") as tmp:
        try:
            if args.lib == "limit":
                result = run_limit(args.db, args.workload, args.n, args.quick, Path(tmp))
            else:
                result = run_case(args.lib, args.db, args.workload, args.n, args.idle, args.settle, Path(tmp))
        except ImportError as exc:
            result = {"lib": args.lib, "db": args.db, "workload": args.workload, "skipped": f"not installable: {exc}"}
        except Exception as exc:
            result = {
                "lib": args.lib,
                "db": args.db,
                "workload": args.workload,
                "error": f"{type(exc).__name__}: {exc}",
            }
            traceback.print_exc()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

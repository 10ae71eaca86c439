"""The execution ledger (written by jobs, outside the database) and the one checker every chaos test uses.

Each worker process appends JSON lines to ``<dir>/<pid>.jsonl`` with single
``O_APPEND`` writes, so a SIGKILL can lose nothing that was already written.
The checker compares the ledger with the stored rows and the chaos the test
caused (which workers it killed or froze, and when).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobkit import JobInfo

LEDGER_ENV = "CHAOS_LEDGER_DIR"
_fd: dict[str, int] = {}


def record(event: str, job_id: int, attempt: int, **extra: Any) -> None:
    """Append one ledger line for this process (a no-op when no ledger directory is configured)."""
    directory = os.environ.get(LEDGER_ENV)
    if not directory:
        return
    if directory not in _fd:
        path = os.path.join(directory, f"{os.getpid()}.jsonl")
        _fd[directory] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = {"e": event, "job": job_id, "attempt": attempt, "pid": os.getpid(), "t": time.time(), **extra}
    os.write(_fd[directory], (json.dumps(line) + "\n").encode())


@dataclass(slots=True)
class Execution:
    """One run of a job's perform in one process, from its ledger lines."""

    job: int
    pid: int
    worker: str
    attempt: int
    start: float
    end: float | None = None
    token: str | None = None
    cancelled: str | None = None


def load(directory: Path) -> dict[int, list[Execution]]:
    """Every execution in the ledger, per job, in start order."""
    runs: dict[int, list[Execution]] = defaultdict(list)
    for path in sorted(directory.glob("*.jsonl")):
        open_runs: dict[int, Execution] = {}
        for raw in path.read_text().splitlines():
            if not raw.strip():
                continue
            entry = json.loads(raw)
            job = int(entry["job"])
            if entry["e"] == "start":
                run = Execution(job, entry["pid"], entry.get("worker", ""), entry["attempt"], entry["t"])
                open_runs[job] = run
                runs[job].append(run)
            elif job in open_runs:
                run = open_runs.pop(job)
                run.end = entry["t"]
                run.token = entry.get("token")
                run.cancelled = entry.get("reason") if entry["e"] == "cancelled" else None
    for executions in runs.values():
        executions.sort(key=lambda r: r.start)
    return dict(runs)


@dataclass
class Verdict:
    """What the checker found: the problems (empty means every rule held) and the measured figures."""

    executions: int = 0
    jobs_executed: int = 0
    run_more_than_once: list[int] = field(default_factory=list)
    rescues: list[tuple[int, str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def rescue_latencies(self) -> list[float]:
        """Seconds from each crash to the rescue of each job the crashed worker held."""
        return [latency for _, _, latency in self.rescues]

    def summary(self) -> str:
        """One line of figures for the test log and the report."""
        lat = sorted(self.rescue_latencies)
        spread = f"{lat[0]:.2f}..{lat[-1]:.2f}s median={statistics.median(lat):.2f}s" if lat else "-"
        return (
            f"executions={self.executions} extra_executions={self.executions - self.jobs_executed} "
            f"run_more_than_once={len(self.run_more_than_once)} rescues={len(lat)} rescue_latency={spread}"
        )


def check(
    directory: Path,
    jobs: list[JobInfo],
    *,
    expected: dict[int, str],
    crashed: dict[str, float],
    rescue_after: float,
    heartbeat: float,
    tolerance: float = 1.0,
    repeats: str = "crashed",
) -> Verdict:
    """Check the ledger against the stored rows; raise AssertionError listing every broken rule.

    ``expected`` maps job id to the status it must end in; ``crashed`` maps the
    worker id of every worker the test killed or froze to the time its rescue
    delay is measured from (``Cluster.rescue_clock()``: the crash, or on SQLite
    the start of the first rescuer that was not yet watching).
    ``repeats``: ``"crashed"`` allows a second execution only when the first ran
    in a crashed worker; ``"any"`` allows (and counts) any repeat.
    """
    runs = load(directory)
    verdict = Verdict(executions=sum(len(r) for r in runs.values()), jobs_executed=len(runs))
    problems = verdict.problems
    by_id = {info.id: info for info in jobs}

    lost = sorted(set(expected) - set(by_id))
    if lost:
        problems.append(f"{len(lost)} jobs lost (no row): {lost[:10]}")
    running = sorted(info.id for info in jobs if info.status == "running")
    if running:
        problems.append(f"{len(running)} jobs left running: {running[:10]}")
    wrong = [(i, by_id[i].status, s) for i, s in expected.items() if i in by_id and by_id[i].status != s]
    if wrong:
        problems.append(f"{len(wrong)} jobs in the wrong state (id, is, expected): {wrong[:10]}")

    for job_id, status in expected.items():
        info = by_id.get(job_id)
        executions = runs.get(job_id, [])
        if status == "completed" and info is not None and info.status == "completed":
            token = info.result.get("token") if isinstance(info.result, dict) else None
            winners = [r for r in executions if r.token is not None and r.token == token]
            if len(winners) != 1:
                problems.append(f"job {job_id}: stored result {info.result!r} matches {len(winners)} executions")
            elif winners[0] is not executions[-1]:
                problems.append(f"job {job_id}: the stored result is not from its last execution: {executions}")
            if not executions:
                problems.append(f"job {job_id}: completed but never executed")
        if len(executions) > 1:
            verdict.run_more_than_once.append(job_id)
            earlier = executions[:-1]
            if repeats == "crashed":
                innocent = [r for r in earlier if r.worker not in crashed]
                if innocent:
                    problems.append(f"job {job_id}: ran again although no crash interrupted it: {executions}")

    for info in jobs:
        for entry in info.errors:
            if entry.get("type") != "WorkerLost" or entry.get("reason") == "shutdown":
                continue  # a job that overran a shutdown is charged a crash by its own worker, not rescued
            worker = str(entry.get("worker"))
            if worker not in crashed:
                if repeats == "crashed":
                    problems.append(f"job {info.id}: rescued from worker {worker}, which never crashed")
                continue
            latency = float(entry["at"]) - crashed[worker]
            verdict.rescues.append((info.id, worker, latency))
            if latency > rescue_after + heartbeat + tolerance:
                problems.append(f"job {info.id}: rescued {latency:.2f}s after its worker crashed")
            if latency < rescue_after - heartbeat - tolerance:
                problems.append(f"job {info.id}: rescued only {latency:.2f}s after its worker crashed (too early)")

    if problems:
        raise AssertionError("chaos ledger check failed:\n  " + "\n  ".join(problems[:40]))
    return verdict

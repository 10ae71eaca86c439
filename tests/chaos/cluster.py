"""Real ``jobkit worker`` processes for the chaos tests: start, signal, restart, read their logs.

Workers run with a compressed timing profile given through ``JOBKIT_*``
variables (a 3 s lease instead of 30 s), so a crash is rescued in seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.chaos.ledger import LEDGER_ENV

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: The compressed timing profile every chaos worker runs with.
PROFILE = {
    "concurrency": 4,
    "poll_interval": 0.2,
    "heartbeat_interval": 0.5,
    "rescue_after": 3.0,
    "rescue_interval": 0.5,
    "cancel_check_interval": 0.2,
    "shutdown_grace": 3.0,
}
RESCUE_AFTER = float(PROFILE["rescue_after"])
HEARTBEAT = float(PROFILE["heartbeat_interval"])


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class WorkerProcess:
    """One worker subprocess and the file that collects its stdout and stderr."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.time)
    worker_id: str = ""
    #: When its start-up line was seen: from then on its rescue passes watch the heartbeats.
    registered: float = 0.0

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def output(self) -> str:
        """Everything the worker printed and logged so far."""
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None


class Cluster:
    """Worker processes on one database, with a shared ledger directory."""

    def __init__(self, database_url: str, tmp_path: Path, **overrides: object) -> None:
        self.database_url = database_url
        self.dir = tmp_path
        self.ledger = tmp_path / "ledger"
        self.ledger.mkdir(exist_ok=True)
        self.settings = {**PROFILE, **overrides}
        self.workers: list[WorkerProcess] = []
        self.crashed: dict[str, float] = {}

    def env(self, **overrides: object) -> dict[str, str]:
        """The environment of a worker: no inherited JOBKIT_* settings, the chaos profile, the ledger."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")}
        for key, value in {**self.settings, **overrides}.items():
            env[f"JOBKIT_{key.upper()}"] = str(value)
        env["JOBKIT_DATABASE_URL"] = self.database_url
        env[LEDGER_ENV] = str(self.ledger)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self, wait: bool = True, **overrides: object) -> WorkerProcess:
        """Start one ``jobkit worker`` process; with ``wait``, return once it has registered."""
        log = self.dir / f"worker-{len(self.workers)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobkit", "worker", "--app", "tests.chaos.jobs"],
                cwd=ROOT,
                env=self.env(**overrides),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log)
        self.workers.append(worker)
        if wait:
            self.wait_registered(worker)
        return worker

    def wait_registered(self, worker: WorkerProcess, timeout: float = 30.0) -> str:
        """Wait for the worker's start-up line and return its worker id."""

        def registered() -> str:
            if not worker.alive():
                raise AssertionError(f"worker {worker.pid} exited during start-up:\n{worker.output()}")
            found = re.search(r"^jobkit worker (\S+):", worker.output(), re.MULTILINE)
            return found.group(1) if found else ""

        worker.worker_id = wait_until(registered, timeout, f"worker {worker.pid} to start")
        worker.registered = time.time()
        return worker.worker_id

    def rescue_clock(self) -> dict[str, float]:
        """For each crashed worker, the time its rescue delay is measured from.

        On PostgreSQL that is the crash: heartbeats are judged by the server's clock. On SQLite a
        rescuer judges a heartbeat by watching it stand still, so one started after the crash
        counts from its own start (docs/guarantees.md, "How long rescue takes").
        """
        if not self.database_url.startswith("sqlite"):
            return dict(self.crashed)
        clock: dict[str, float] = {}
        for crashed, when in self.crashed.items():
            watchers = [w.registered for w in self.workers if w.worker_id != crashed and w.registered]
            clock[crashed] = max(when, min(watchers)) if watchers else when
        return clock

    def alive(self) -> list[WorkerProcess]:
        """The workers still running."""
        return [w for w in self.workers if w.alive()]

    def kill(self, worker: WorkerProcess) -> float:
        """SIGKILL a worker (no clean-up runs at all) and remember when."""
        if not worker.worker_id:
            self.wait_registered(worker)
        when = time.time()
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(10)
        self.crashed[worker.worker_id] = when
        return when

    def freeze(self, worker: WorkerProcess) -> float:
        """SIGSTOP a worker: it holds its leases but cannot heartbeat; remembered as a crash."""
        if not worker.worker_id:
            self.wait_registered(worker)
        when = time.time()
        worker.proc.send_signal(signal.SIGSTOP)
        self.crashed[worker.worker_id] = when
        return when

    def thaw(self, worker: WorkerProcess) -> None:
        """SIGCONT a frozen worker."""
        worker.proc.send_signal(signal.SIGCONT)

    def terminate(self, worker: WorkerProcess, timeout: float) -> tuple[int, float]:
        """SIGTERM a worker and wait for it; returns (exit code, seconds it took)."""
        start = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"worker {worker.pid} still running {timeout}s after SIGTERM") from exc
        return code, time.monotonic() - start

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every live worker and assert each exits 0."""
        live = self.alive()
        for worker in live:
            worker.proc.send_signal(signal.SIGTERM)
        for worker in live:
            try:
                code = worker.proc.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                raise AssertionError(f"worker {worker.pid} ignored SIGTERM:\n{worker.output()[-3000:]}") from exc
            assert code == 0, f"worker {worker.pid} exited {code}:\n{worker.output()[-3000:]}"

    def close(self) -> None:
        """Kill whatever is still running (test clean-up)."""
        for worker in self.workers:
            if worker.alive():
                worker.proc.send_signal(signal.SIGCONT)
                worker.proc.kill()
                worker.proc.wait(10)

    def logs(self) -> str:
        """Every worker's output, concatenated."""
        return "\n".join(f"--- worker {w.pid} ({w.worker_id})\n{w.output()}" for w in self.workers)

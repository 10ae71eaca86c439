"""Process-isolated jobs that misbehave on purpose, and a ledger of when jobs ran (issue 11).

Importable by child processes and by ``jobkit worker --app tests.proc_jobs``. Each job that
takes a ``ledger`` appends one line ``start end pid`` to that file, so a test can measure how
many ran at once across processes.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from jobkit import BaseJob, job
from tests.long_jobs import ImportArgs, ImportDocument, ImportDocumentAsync


class ProcArgs(BaseModel):
    seconds: float = 0.0
    ledger: str | None = None
    megabytes: int = 0
    stages: int = 0


def _record(args: ProcArgs, started: float) -> None:
    if args.ledger:
        with open(args.ledger, "a", encoding="utf-8") as ledger:
            ledger.write(f"{started} {time.time()} {os.getpid()}\n")


def peak(ledger: Path) -> int:
    """The most jobs the ledger shows running at once."""
    marks: list[tuple[float, int]] = []
    for line in ledger.read_text().splitlines():
        start, end, _pid = line.split()
        marks += [(float(start), 1), (float(end), -1)]
    now = best = 0
    for _, step in sorted(marks, key=lambda m: (m[0], m[1])):  # an end before a start at the same instant
        now += step
        best = max(best, now)
    return best


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie awaiting its parent's wait() counts as gone; Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pids(ledger: Path) -> list[int]:
    """The process ids that ran the ledger's jobs, in the order they finished."""
    return [int(line.split()[2]) for line in ledger.read_text().splitlines()]


@job(name="proc.sleep", schema=ProcArgs, isolation="process", max_retries=0)
class ProcSleep(BaseJob[ProcArgs]):
    """Sleeps, records itself in the ledger and returns its pid."""

    def perform(self, args: ProcArgs) -> int:
        started = time.time()
        time.sleep(args.seconds)
        _record(args, started)
        return os.getpid()


@job(name="proc.thread_sleep", schema=ProcArgs, isolation="thread", max_retries=0)
class ThreadSleep(BaseJob[ProcArgs]):
    """The same in an executor thread."""

    def perform(self, args: ProcArgs) -> int:
        started = time.time()
        time.sleep(args.seconds)
        _record(args, started)
        return os.getpid()


@job(name="proc.default_sleep", schema=ProcArgs, max_retries=0)
class DefaultSleep(BaseJob[ProcArgs]):
    """No isolation option: runs where the worker's pool says."""

    def perform(self, args: ProcArgs) -> int:
        started = time.time()
        time.sleep(args.seconds)
        _record(args, started)
        return os.getpid()


@job(name="proc.sys_exit", schema=ProcArgs, isolation="process", max_retries=1, backoff=lambda attempt: 0.0)
class ProcSysExit(BaseJob[ProcArgs]):
    def perform(self, args: ProcArgs) -> None:
        sys.exit(3)


@job(name="proc.keyboard_interrupt", schema=ProcArgs, isolation="process", max_retries=1, backoff=lambda a: 0.0)
class ProcKeyboardInterrupt(BaseJob[ProcArgs]):
    def perform(self, args: ProcArgs) -> None:
        raise KeyboardInterrupt


@job(name="proc.os_exit", schema=ProcArgs, isolation="process", max_retries=5, backoff=lambda attempt: 0.0)
class ProcOsExit(BaseJob[ProcArgs]):
    """Ends its process at once: no outcome of its own, a crash every time."""

    def perform(self, args: ProcArgs) -> None:
        os._exit(7)


@job(name="proc.segfault", schema=ProcArgs, isolation="process", max_retries=5, backoff=lambda attempt: 0.0)
class ProcSegfault(BaseJob[ProcArgs]):
    def perform(self, args: ProcArgs) -> None:
        ctypes.string_at(0)


@job(name="proc.spin", schema=ProcArgs, isolation="process", timeout=1, max_retries=1, backoff=lambda a: 0.0)
class ProcSpin(BaseJob[ProcArgs]):
    """A pure-Python loop that never looks at its token: only killing its process ends it."""

    def perform(self, args: ProcArgs) -> None:
        n = 0
        while True:
            n += 1


@job(name="proc.wedged", schema=ProcArgs, isolation="process", max_retries=0)
class ProcWedged(BaseJob[ProcArgs]):
    """No timeout, ignores every request: sleeps ``seconds`` (records the start so a test knows it runs)."""

    def perform(self, args: ProcArgs) -> str:
        _record(args, time.time())
        time.sleep(args.seconds)
        return "woke up"


@job(name="proc.grow", schema=ProcArgs, isolation="process", max_retries=0)
class ProcGrow(BaseJob[ProcArgs]):
    """Grows its process by ``megabytes`` and keeps it (a leak), then returns its pid."""

    leak: list[bytearray] = []

    def perform(self, args: ProcArgs) -> int:
        block = bytearray(args.megabytes * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
        ProcGrow.leak.append(block)
        return os.getpid()


@job(name="proc.reports", schema=ProcArgs, isolation="process", max_retries=0)
class ProcReports(BaseJob[ProcArgs]):
    """Reports progress through ``stages`` stages and checkpoints each one; resumes after its checkpoint."""

    def perform(self, args: ProcArgs) -> dict[str, object]:
        first = int(self.last_checkpoint.data) + 1 if self.last_checkpoint else 0
        for stage in range(first, args.stages):
            self.progress(100 * (stage + 1) / args.stages, stage=f"stage-{stage}")
            self.checkpoint("done", stage)
            if self.cancel_token.wait(args.seconds):
                self.cancel_token.raise_if_cancelled()
        self.logger.warning("reports finished in %s", os.getpid())
        return {"resumed_at": first, "pid": os.getpid()}


@job(name="proc.import_document", schema=ImportArgs, isolation="process", max_retries=3, backoff=lambda a: 0.0)
class ProcImportDocument(ImportDocument):
    """The long-running import (stages, progress, checkpoints, file controls) in a child process."""


@job(name="proc.import_document_async", schema=ImportArgs, isolation="process", max_retries=3, backoff=lambda a: 0.0)
class ProcImportDocumentAsync(ImportDocumentAsync):
    """The async import in a child process (its own event loop there)."""


@job(name="proc.blocks_loop", schema=ProcArgs, max_retries=0)
class BlocksLoop(BaseJob[ProcArgs]):
    """An async job that calls a blocking sleep: it stalls the worker's event loop."""

    async def perform(self, args: ProcArgs) -> str:
        time.sleep(args.seconds)
        return "blocked"

"""Unique job types for the tests, importable by the processes that race to enqueue them."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

import jobkit
from jobkit import BaseJob, JobQueue, job


class SyncArgs(BaseModel):
    account_id: int
    note: str = ""


@job(name="tests.unique.sync", schema=SyncArgs, unique=True)
class SyncAccount(BaseJob[SyncArgs]):
    def perform(self, args: SyncArgs) -> int:
        return args.account_id


@job(name="tests.unique.by_account", schema=SyncArgs, unique=True, unique_by=("account_id",))
class SyncByAccount(BaseJob[SyncArgs]):
    def perform(self, args: SyncArgs) -> str:
        return args.note


@job(name="tests.unique.replace", schema=SyncArgs, unique=True, unique_by=("account_id",), on_conflict="replace")
class ReplaceSync(BaseJob[SyncArgs]):
    def perform(self, args: SyncArgs) -> str:
        return args.note


@job(name="tests.unique.debounce", schema=SyncArgs, unique=True, on_conflict="debounce")
class DebounceSync(BaseJob[SyncArgs]):
    def perform(self, args: SyncArgs) -> int:
        return args.account_id


@job(
    name="tests.unique.hourly",
    schema=SyncArgs,
    unique_for=timedelta(hours=1),
    unique_states=("pending", "running", "completed"),
)
class HourlyReport(BaseJob[SyncArgs]):
    def perform(self, args: SyncArgs) -> int:
        return args.account_id


@job(name="tests.unique.anywhere", schema=SyncArgs, unique=True, unique_across_queues=True)
class AnyQueueSync(BaseJob[SyncArgs]):
    def perform(self, args: SyncArgs) -> int:
        return args.account_id


def race_enqueue(url: str, ready: Any, go: Any, results: Any) -> None:
    """In a process of its own: open a queue, say ready, wait for go, enqueue the same unique job once."""
    queue = jobkit.configure(database_url=url)
    try:
        queue.store.now()  # a warm connection, so the enqueues start together
        ready.release()
        go.wait(30)
        handle = SyncAccount.perform_later(account_id=7)
        results.put((handle.id, handle.duplicate))
    finally:
        queue.close()
        JobQueue.set_instance(None)


# -- named queues with their own slots (in-process workers share these)

gates: dict[str, threading.Event] = {}
ran: list[tuple[str, int]] = []
running = {"now": 0, "peak": 0}
_lock = threading.Lock()


class GateArgs(BaseModel):
    gate: str = ""
    tag: int = 0


@job(name="tests.queues.gated", schema=GateArgs, max_retries=0)
class Gated(BaseJob[GateArgs]):
    """Records its tag as it starts, then waits for its gate (if any) to open; counts how many run at once."""

    def perform(self, args: GateArgs) -> int:
        with _lock:
            ran.append((self.job_type().name, args.tag))
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
        try:
            if args.gate:
                gates.setdefault(args.gate, threading.Event()).wait(30)
        finally:
            with _lock:
                running["now"] -= 1
        return args.tag


# -- concurrency keys


class KeyedArgs(BaseModel):
    account_id: int
    seconds: float = 0.0
    ledger: str = ""


def _ledger_line(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(text + "\n")


@job(
    name="tests.keys.per_account",
    schema=KeyedArgs,
    max_retries=2,
    concurrency_key=lambda args: f"account:{args.account_id}",
    concurrency_limit=1,
)
class PerAccount(BaseJob[KeyedArgs]):
    """Writes start and end lines (key, wall time) to its ledger around a short sleep."""

    def perform(self, args: KeyedArgs) -> int:
        if args.ledger:
            _ledger_line(args.ledger, f"start account:{args.account_id} {time.time()!r} {self.job_id} {os.getpid()}")
        self.cancel_token.wait(args.seconds)
        if args.ledger:
            _ledger_line(args.ledger, f"end account:{args.account_id} {time.time()!r} {self.job_id} {os.getpid()}")
        return args.account_id


@job(name="tests.keys.pair", schema=KeyedArgs, max_retries=0, concurrency_key=lambda args: "pair", concurrency_limit=2)
class Pair(BaseJob[KeyedArgs]):
    """Two at a time across every worker."""

    def perform(self, args: KeyedArgs) -> int:
        return args.account_id


def ledger_lines(path: str) -> list[tuple[str, str, float, int, int]]:
    """The ledger's lines: (start or end, key, wall time, job id, pid)."""
    with open(path, encoding="utf-8") as file:
        return [(kind, key, float(at), int(job), int(pid)) for kind, key, at, job, pid in map(str.split, file)]


def peak_per_key(path: str, killed: dict[int, float] | None = None) -> dict[str, int]:
    """The most jobs of each key that ran at once, from a ledger of start and end lines.

    ``killed``: pid -> when it was SIGKILLed; its jobs that never wrote an end ended then.
    """
    lines = ledger_lines(path)
    ended = {(job_id, pid) for kind, _, _, job_id, pid in lines if kind == "end"}
    events = [(at, 0 if kind == "end" else 1, key) for kind, key, at, _, _ in lines]
    for kind, key, _, job_id, pid in lines:
        if kind == "start" and (job_id, pid) not in ended and killed and pid in killed:
            events.append((killed[pid], 0, key))
    now: dict[str, int] = {}
    peak: dict[str, int] = {}
    for _, starts, key in sorted(events):
        now[key] = now.get(key, 0) + (1 if starts else -1)
        peak[key] = max(peak.get(key, 0), now[key])
    return peak


def _no_key(args: KeyedArgs) -> str:
    raise LookupError(f"no key for account {args.account_id}")


@job(name="tests.keys.bad", schema=KeyedArgs, concurrency_key=_no_key)
class BadKey(BaseJob[KeyedArgs]):
    """Its key function fails: the enqueue is refused."""

    def perform(self, args: KeyedArgs) -> int:
        return args.account_id


@job(
    name="tests.keys.unique",
    schema=KeyedArgs,
    unique=True,
    unique_by=("account_id",),
    concurrency_key=lambda args: "shared",
    concurrency_limit=1,
)
class UniqueKeyed(BaseJob[KeyedArgs]):
    """Unique per account, and one at a time across all accounts."""

    def perform(self, args: KeyedArgs) -> int:
        return args.account_id

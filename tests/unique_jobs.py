"""Unique job types for the tests, importable by the processes that race to enqueue them."""

from __future__ import annotations

import threading
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

"""Unique job types for the tests, importable by the processes that race to enqueue them."""

from __future__ import annotations

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

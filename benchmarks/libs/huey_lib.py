"""huey with its SQLite storage, through its public API: ``SqliteHuey.task`` and the thread consumer."""

from __future__ import annotations

from pathlib import Path

from huey import SqliteHuey

from benchmarks import ledger
from benchmarks.libs.base import BaseAdapter, Item


class Adapter(BaseAdapter):
    name = "huey"
    bulk = False
    note = "thread workers; huey deletes the row when it dequeues (at-most-once); consumer defaults"

    def __init__(self, db: str, workdir: Path) -> None:
        super().__init__(db, workdir)
        self.huey = SqliteHuey(name="bench", filename=str(self.sqlite_path), results=False)
        self.task = self.huey.task(name="record")(ledger.record)

    def setup(self) -> None:
        self.huey.flush()

    def teardown(self) -> None:
        self.sqlite_path.unlink(missing_ok=True)

    def enqueue_one(self, item: Item) -> None:
        self.task(*item)

    def run_worker(self, concurrency: int) -> None:
        self.huey.create_consumer(workers=concurrency, worker_type="thread", periodic=False).run()

"""jobkit through its public API: ``@job``, ``perform_later``, ``perform_all_later``, ``JobQueue.run``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

import jobkit
from benchmarks import common, history, ledger
from benchmarks.libs.base import BaseAdapter, Item
from jobkit import BaseJob, job


class BenchArgs(BaseModel):
    n: int
    t: float
    s: float = 0.0


@job(name="bench.record", schema=BenchArgs, max_retries=0)
class Record(BaseJob[BenchArgs]):
    """The benchmark job: log to the ledger (and sleep ``s`` seconds for W4)."""

    def perform(self, args: BenchArgs) -> None:
        ledger.record(args.n, args.t, args.s)


class Adapter(BaseAdapter):
    name = "jobkit"

    def __init__(self, db: str, workdir: Path) -> None:
        super().__init__(db, workdir)
        if db == "postgres":
            self.url = common.pg_url(self.pg_database, "postgresql+psycopg")
        else:
            self.url = f"sqlite:///{self.sqlite_path}"
        self._queue: jobkit.JobQueue | None = None

    def setup(self) -> None:
        super().setup()
        # Creating the queue runs the migrations, so workers find the schema ready.
        self.producer()

    def setup_with_history(self) -> str:
        # A copy of the cached seed (benchmarks/history.py), then the producer, whose migrations find
        # the schema up to date.
        if self.db == "postgres":
            seeded = history.place_postgres(self.pg_database)
        else:
            seeded = history.place_sqlite(self.sqlite_path)
        self.producer()
        return f"{history.FINISHED:,} finished + {history.FUTURE:,} future rows in the table ({seeded})"

    def producer(self) -> jobkit.JobQueue:
        if self._queue is None:
            self._queue = jobkit.configure(database_url=self.url)
        return self._queue

    def enqueue_one(self, item: Item) -> None:
        self.producer()
        Record.perform_later(n=item[0], t=item[1], s=item[2])

    def enqueue_many(self, items: list[Item]) -> None:
        self.producer()
        Record.perform_all_later([{"n": n, "t": t, "s": s} for n, t, s in items])

    def run_worker(self, concurrency: int) -> None:
        queue = jobkit.configure(database_url=self.url, concurrency=concurrency)
        queue.run()

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None

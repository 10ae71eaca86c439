"""rq through its public API: ``Queue.enqueue``, ``Queue.enqueue_many`` and ``SimpleWorker.work``."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from rq import Queue, SimpleWorker

from benchmarks import common, ledger
from benchmarks.libs.base import BaseAdapter, Item


class Adapter(BaseAdapter):
    name = "rq"
    max_concurrency = 1
    note = "rq runs one job at a time per worker process (SimpleWorker, no fork)"

    def __init__(self, db: str, workdir: Path) -> None:
        super().__init__(db, workdir)
        self.redis = Redis.from_url(common.REDIS_URL)
        self.queue = Queue("bench", connection=self.redis)

    def setup(self) -> None:
        self.redis.flushdb()

    def teardown(self) -> None:
        self.redis.flushdb()

    def enqueue_one(self, item: Item) -> None:
        self.queue.enqueue(ledger.record, *item)

    def enqueue_many(self, items: list[Item]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(ledger.record, args=item) for item in items])

    def run_worker(self, concurrency: int) -> None:
        SimpleWorker([self.queue], connection=self.redis).work()

    def close(self) -> None:
        self.redis.close()

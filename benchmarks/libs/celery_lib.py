"""Celery on Redis through its public API: ``app.task``, ``delay`` and ``worker_main`` (threads pool)."""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from redis import Redis

from benchmarks import common, ledger
from benchmarks.libs.base import BaseAdapter, Item


class Adapter(BaseAdapter):
    name = "celery"
    bulk = False
    note = "threads pool, results ignored, no mingle/gossip/heartbeat"

    def __init__(self, db: str, workdir: Path) -> None:
        super().__init__(db, workdir)
        self.app = Celery("bench", broker=common.REDIS_URL)
        self.app.conf.task_ignore_result = True
        self.app.conf.worker_hijack_root_logger = False
        self.task = self.app.task(name="record")(ledger.record)

    def setup(self) -> None:
        with Redis.from_url(common.REDIS_URL) as redis:
            redis.flushdb()

    def teardown(self) -> None:
        self.setup()

    def enqueue_one(self, item: Item) -> None:
        self.task.delay(*item)

    def run_worker(self, concurrency: int) -> None:
        self.app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=WARNING",
            ]
        )

    def close(self) -> None:
        self.app.close()

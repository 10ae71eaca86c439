"""procrastinate through its public API: ``App.task``, ``defer``, ``batch_defer``, ``run_worker_async``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import procrastinate

from benchmarks import common, ledger
from benchmarks.libs.base import BaseAdapter, Item


async def record(n: int, t: float, s: float = 0.0) -> None:
    await ledger.record_async(n, t, s)


class Adapter(BaseAdapter):
    name = "procrastinate"
    note = "async task"

    def __init__(self, db: str, workdir: Path) -> None:
        super().__init__(db, workdir)
        self.conninfo = common.pg_conninfo(self.pg_database)
        self._app: procrastinate.App | None = None

    def app(self) -> procrastinate.App:
        if self._app is None:
            app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=self.conninfo))
            self.task = app.task(name="record")(record)
            self._app = app.open()
        return self._app

    def setup(self) -> None:
        super().setup()
        self.app().schema_manager.apply_schema()

    def enqueue_one(self, item: Item) -> None:
        self.app()
        n, t, s = item
        self.task.defer(n=n, t=t, s=s)

    def enqueue_many(self, items: list[Item]) -> None:
        self.app()
        self.task.batch_defer(*({"n": n, "t": t, "s": s} for n, t, s in items))

    def run_worker(self, concurrency: int) -> None:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=self.conninfo))
        app.task(name="record")(record)

        async def main() -> None:
            async with app.open_async():
                await app.run_worker_async(concurrency=concurrency)

        asyncio.run(main())

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None

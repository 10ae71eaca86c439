"""pgqueuer through its public API: ``Queries.install``, ``SyncQueries.enqueue``, ``PgQueuer.entrypoint`` + ``run``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import psycopg
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.db import SyncPsycopgDriver
from pgqueuer.models import Job
from pgqueuer.queries import SyncQueries

from benchmarks import common, ledger
from benchmarks.libs.base import BaseAdapter, Item


class Adapter(BaseAdapter):
    name = "pgqueuer"
    note = "async entrypoint; batch_size = concurrency/2, max_concurrent_tasks = concurrency"

    def __init__(self, db: str, workdir: Path) -> None:
        super().__init__(db, workdir)
        self.dsn = common.pg_url(self.pg_database)
        self._conn: psycopg.Connection | None = None
        self._queries: SyncQueries | None = None

    def setup(self) -> None:
        super().setup()

        async def install() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await Queries(AsyncpgDriver(conn)).install()
            finally:
                await conn.close()

        asyncio.run(install())

    def queries(self) -> SyncQueries:
        if self._queries is None:
            self._conn = psycopg.connect(common.pg_conninfo(self.pg_database), autocommit=True)
            self._queries = SyncQueries(SyncPsycopgDriver(self._conn))
        return self._queries

    def enqueue_one(self, item: Item) -> None:
        n, t, s = item
        self.queries().enqueue("record", json.dumps({"n": n, "t": t, "s": s}).encode())

    def enqueue_many(self, items: list[Item]) -> None:
        payloads: list[bytes | None] = [json.dumps({"n": n, "t": t, "s": s}).encode() for n, t, s in items]
        self.queries().enqueue(["record"] * len(items), payloads, [0] * len(items))

    def run_worker(self, concurrency: int) -> None:
        async def main() -> None:
            conn = await asyncpg.connect(self.dsn)
            pgq = PgQueuer(AsyncpgDriver(conn))

            @pgq.entrypoint("record")
            async def record(job: Job) -> None:
                data = json.loads(job.payload or b"{}")
                await ledger.record_async(data["n"], data["t"], data["s"])

            batch = max(1, concurrency // 2)
            await pgq.run(batch_size=batch, max_concurrent_tasks=max(concurrency, 2 * batch))

        asyncio.run(main())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._queries = None

"""oban (Oban for Python) through its public API: ``@job``, ``Oban.enqueue``, ``Oban.enqueue_many``, embedded queues.

oban needs Python >= 3.12; on an older peers' interpreter the import below fails and the harness
reports every oban case as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from benchmarks import common, ledger
from benchmarks.libs.base import BaseAdapter, Item

try:
    from oban import Oban, job
    from oban.schema import install
except ImportError as exc:
    if sys.version_info < (3, 12):
        raise ImportError(f"oban needs Python >= 3.12; the peers' environment runs {sys.version.split()[0]}") from exc
    raise

QUEUE = "default"


@job(queue=QUEUE)
async def record(n: int, t: float, s: float = 0.0) -> None:
    """The benchmark job, as an async function job (oban runs jobs as asyncio tasks)."""
    await ledger.record_async(n, t, s)


class Adapter(BaseAdapter):
    name = "oban"
    note = (
        "async function job; async-only API driven from one event loop (client-mode Oban); "
        "enqueue_many = one INSERT per job in one transaction; embedded worker, queue limit = concurrency"
    )

    def __init__(self, db: str, workdir: Path) -> None:
        super().__init__(db, workdir)
        self.dsn = common.pg_url(self.pg_database)
        self._runner: asyncio.Runner | None = None
        self._pool: Any = None
        self._oban: Oban | None = None

    def setup(self) -> None:
        super().setup()

        async def install_schema() -> None:
            pool = await Oban.create_pool(self.dsn, min_size=1, max_size=1)
            try:
                await install(pool)
            finally:
                await pool.close()

        asyncio.run(install_schema())

    def _client(self) -> tuple[asyncio.Runner, Oban]:
        """The producer's event loop and its started client-mode Oban (no queues: it only enqueues)."""
        if self._runner is None or self._oban is None:
            runner = asyncio.Runner()

            async def start() -> Oban:
                self._pool = await Oban.create_pool(self.dsn)
                return await Oban(pool=self._pool).start()

            self._oban = runner.run(start())
            self._runner = runner
        return self._runner, self._oban

    def enqueue_one(self, item: Item) -> None:
        runner, oban = self._client()
        n, t, s = item
        runner.run(oban.enqueue(record.new(n, t, s)))

    def enqueue_many(self, items: list[Item]) -> None:
        runner, oban = self._client()
        runner.run(oban.enqueue_many([record.new(n, t, s) for n, t, s in items]))

    def run_worker(self, concurrency: int) -> None:
        async def main() -> None:
            pool = await Oban.create_pool(self.dsn)
            try:
                async with Oban(pool=pool, queues={QUEUE: concurrency}):
                    await asyncio.Event().wait()  # until the harness kills the process
            finally:
                await pool.close()

        asyncio.run(main())

    def close(self) -> None:
        if self._runner is None:
            return
        runner, oban, pool = self._runner, self._oban, self._pool
        self._runner, self._oban, self._pool = None, None, None

        async def stop() -> None:
            try:
                if oban is not None:
                    await oban.stop()
            finally:
                if pool is not None:
                    await pool.close()

        try:
            runner.run(stop())
        finally:
            runner.close()

"""The adapter contract every library implements (see benchmarks/case.py for how it is driven)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import common

Item = tuple[int, float, float]  # (n, enqueued at, seconds to sleep)


class BaseAdapter:
    """Where one library keeps its jobs, and how to enqueue and work them.

    The storage location depends only on (library, database, workdir), so the worker children, which
    build their own adapter, find the same database as the producer.
    """

    name = "base"
    #: whether the library has a bulk-enqueue call (W1b); without one W1b is reported as n/a
    bulk = True
    #: per-process concurrency this library can offer in one worker process (None: any)
    max_concurrency: int | None = None
    #: shown next to the figures: deviations from the workload's definition
    note = ""

    def __init__(self, db: str, workdir: Path) -> None:
        self.db = db
        self.workdir = workdir
        self.pg_database = f"bench_{self.name}"
        self.sqlite_path = workdir / f"{self.name}.sqlite3"

    def setup(self) -> None:
        """Make empty storage for one case (called once, in the case process, before any worker)."""
        if self.db == "postgres":
            common.recreate_pg_database(self.pg_database)

    def setup_with_history(self) -> str:
        """Like :meth:`setup`, with W7's finished and future rows already stored; returns a note on them.

        Only libraries named in ``benchmarks.libs.SEEDS_HISTORY`` implement it.
        """
        raise NotImplementedError

    def teardown(self) -> None:
        """Remove what :meth:`setup` made."""
        if self.db == "postgres":
            common.drop_pg_database(self.pg_database)

    def enqueue_one(self, item: Item) -> None:
        """Enqueue one job in its own call and commit."""
        raise NotImplementedError

    def enqueue_many(self, items: list[Item]) -> None:
        """Enqueue many jobs in one bulk call."""
        raise NotImplementedError

    def run_worker(self, concurrency: int) -> None:
        """Run one worker in this process until killed (called in a worker child)."""
        raise NotImplementedError

    def query_count(self) -> int | None:
        """Statements the storage has served so far (None when the storage cannot tell)."""
        if self.db == "postgres":
            return common.pg_transactions(self.pg_database)
        if self.db == "redis":
            return common.redis_commands()
        return None

    def close(self) -> None:
        """Release the producer's connections."""

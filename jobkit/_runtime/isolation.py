"""Which jobs run in a child process, and the worker's process pool, made on the first such job.

A job type's ``isolation`` option decides (``"thread"`` or ``"process"``); without it, the
worker's ``pool`` setting. The :class:`~jobkit._runtime.procpool.ProcessPool` is made lazily, so
a worker that runs no process job starts no child and no spawner thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from jobkit._registry import JobType
from jobkit._runtime.procpool import ProcessConfig, ProcessPool


class Isolation:
    """Which jobs run in a child (their ``isolation`` option, else the worker's pool), and the children.

    The :class:`ProcessPool` is made on the first process-isolated job: a worker that runs none
    starts no child and no spawner thread.
    """

    def __init__(
        self, pool: str, config: ProcessConfig, capacity: int, types: Callable[[], dict[str, JobType]]
    ) -> None:
        self.default_process = pool == "processes"
        self.config = config
        self.capacity = capacity
        self.types = types
        self._lock = threading.Lock()
        self._pool: ProcessPool | None = None

    def applies(self, job_type: JobType | None) -> bool:
        """True when jobs of this type run in a child process."""
        if job_type is None:
            return False
        isolation = job_type.options.isolation
        return isolation == "process" or (isolation is None and self.default_process)

    def pool(self) -> ProcessPool:
        """The worker's children, made on first use."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPool(self.config, self.app_modules, self.capacity)
            return self._pool

    @property
    def started(self) -> bool:
        """Whether any process job ran (and so the pool exists)."""
        return self._pool is not None

    def children(self) -> list[dict[str, Any]]:
        """The live child processes (empty while no process job ran)."""
        with self._lock:
            pool = self._pool
        return [] if pool is None else pool.children()

    def app_modules(self) -> tuple[str, ...]:
        """What a child imports at start: the modules declaring process-isolated job types (the --app ones).

        A module it lacks is imported when one of its jobs comes; ``__main__`` cannot be (a
        child must not re-run the worker's script), so job types defined there run in threads only.
        """
        modules = {getattr(t.target, "__module__", None) for t in self.types().values() if self.applies(t)}
        return tuple(sorted(m for m in modules if isinstance(m, str) and m not in ("__main__", "__mp_main__")))

    def stop(self) -> None:
        """Stop the children, if any were started."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.stop()

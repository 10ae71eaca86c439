"""The event-loop watch: an async job that blocks the worker's loop is named in the log.

Async jobs share one asyncio loop; one that calls something blocking (``time.sleep(8)`` inside
``async def perform``, a sync HTTP client) stalls every other async job on it. A thread of its own
posts a heartbeat callback to the loop every :data:`BEAT` seconds; when one waits longer than
``threshold``, the task running on the loop at that moment is the one blocking it, and the job
it belongs to (tasks of jobs are named ``jobkit-job-<id>``) is logged with its id and name,
once per blocking episode. ``isolation="process"`` is the cure the message names.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("jobkit.worker")

#: Seconds between heartbeats posted to the loop.
BEAT = 0.1
#: The prefix of the names the executor gives the tasks that run jobs.
TASK_PREFIX = "jobkit-job-"


class LoopWatch:
    """Watches one event loop for lag over ``threshold`` seconds and names the job that caused it.

    Example::

        watch = LoopWatch(loop, 1.0, describe=lambda job_id: "report.build")
        watch.start()
        ...
        watch.stop()
        watch.blocked        # blocking episodes seen so far
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, threshold: float, describe: Callable[[int], str | None]
    ) -> None:
        self.loop = loop
        self.threshold = threshold
        self.describe = describe
        #: Blocking episodes seen, and the last job that caused one (id, name, seconds).
        self.blocked = 0
        self.last: tuple[int | None, str | None, float] | None = None
        self._posted: float | None = None
        self._reported = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the watching thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="jobkit-loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watching thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def run_once(self) -> bool:
        """One look: post a heartbeat if none waits, or report one that waits too long; True if blocked."""
        now = time.monotonic()
        with self._lock:
            posted = self._posted
            if posted is None:
                self._posted = now
                self._reported = False
        if posted is None:
            try:
                self.loop.call_soon_threadsafe(self._beat)
            except RuntimeError:  # the loop is closed
                return False
            return False
        lag = now - posted
        if lag < self.threshold:
            return False
        with self._lock:
            if self._reported:
                return True
            self._reported = True
        self._report(lag)
        return True

    def _beat(self) -> None:
        with self._lock:
            self._posted = None

    def _watch(self) -> None:
        while not self._stop.wait(BEAT):
            try:
                self.run_once()
            except Exception:
                log.exception("loop watch failed; continuing")

    def _report(self, lag: float) -> None:
        # Read from this thread while the loop is stuck inside the task: current_task is that task.
        task = asyncio.current_task(self.loop)
        job_id = _job_id(task.get_name()) if task is not None else None
        name = self.describe(job_id) if job_id is not None else None
        self.blocked += 1
        self.last = (job_id, name, lag)
        if job_id is None:
            log.warning("the async event loop has been blocked for %.1fs by code outside a job", lag)
            return
        log.warning(
            "job %s %s has blocked the async event loop for %.1fs (a blocking call in async def perform?); "
            "every async job on this worker waits for it; run it with isolation='process'",
            job_id,
            name,
            lag,
        )


def _job_id(task_name: str) -> int | None:
    if not task_name.startswith(TASK_PREFIX):
        return None
    try:
        return int(task_name[len(TASK_PREFIX) :])
    except ValueError:
        return None

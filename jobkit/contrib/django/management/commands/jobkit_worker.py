"""``manage.py jobkit_worker``: jobkit's worker for a Django project's tasks.

It imports every installed app's ``tasks`` module (and the modules in the backend's
``OPTIONS["TASK_MODULES"]``), and the module of every task that has jobs waiting (at start and every
``OPTIONS["TASK_RESCAN"]`` seconds, default 30), so each task's job type is registered, then runs
jobkit's worker: concurrent, rescuing the jobs of workers
that died, draining on SIGTERM.
"""

from __future__ import annotations

import logging
import threading
from importlib import import_module
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.tasks import task_backends
from django.utils.module_loading import autodiscover_modules, import_string

from jobkit import JobQueue, JobState
from jobkit.contrib.django._tasks import PREFIX
from jobkit.contrib.django.backend import JobkitBackend

log = logging.getLogger("jobkit.django")


class Command(BaseCommand):  # type: ignore[misc]
    """Run a jobkit worker for one ``TASKS`` backend until SIGTERM or SIGINT."""

    help = "Run a jobkit worker for a TASKS backend (SIGTERM or SIGINT drains it; a second signal hurries it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default="default", help="The TASKS alias to work (default: default).")
        parser.add_argument("--concurrency", type=int, default=None, help="Tasks run at once (default 5).")
        parser.add_argument("--queues", default=None, help="Comma-separated queues (default: the backend's QUEUES).")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["backend"]
        try:
            backend = task_backends[alias]
        except Exception as exc:
            raise CommandError(f"no TASKS backend {alias!r}: {exc}") from exc
        if not isinstance(backend, JobkitBackend):
            raise CommandError(f"TASKS[{alias!r}] is {type(backend).__name__}, not jobkit.contrib.django.JobkitBackend")
        logging.getLogger("jobkit").setLevel(logging.INFO)
        autodiscover_modules("tasks")
        for module in backend.options.get("TASK_MODULES", ()):
            import_module(module)
        queues = options["queues"].split(",") if options["queues"] else None
        queue = backend.worker_queue(concurrency=options["concurrency"], queues=queues)
        finder = TaskFinder(queue, float(backend.options.get("TASK_RESCAN", 30.0)))
        finder.run_once()
        tasks = [name for name in queue.job_types() if name.startswith(PREFIX)]
        self.stdout.write(
            f"jobkit worker {queue.worker.id} for TASKS[{alias!r}]: {len(tasks)} tasks, "
            f"concurrency {queue.settings.concurrency}, queues {', '.join(queue.settings.queues or ('all',))}"
        )
        finder.start()
        try:
            status = queue.run()
        finally:
            finder.stop()
            queue.close()
        if status:
            raise SystemExit(status)


class TaskFinder:
    """Imports the module of every task that has jobs waiting, so that this worker claims them too.

    A task's job type is registered when its module is imported; a task defined outside the
    autodiscovered modules is found here, from the jobs that wait for it, every ``interval`` seconds.
    """

    def __init__(self, queue: JobQueue, interval: float) -> None:
        self.queue = queue
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unimportable: set[str] = set()

    def run_once(self) -> list[str]:
        """Import the waiting tasks not registered yet; returns the module paths it registered."""
        known = set(self.queue.job_types())
        found = []
        try:
            waiting = _waiting_tasks(self.queue.stats())
        except Exception as exc:  # the database is away for a moment: the next pass looks again
            log.warning("could not list the tasks that jobs wait for: %s", exc)
            return []
        for path in waiting:
            if PREFIX + path in known or path in self._unimportable:
                continue
            try:
                import_string(path)  # defining the task registers its job type
            except ImportError as exc:
                self._unimportable.add(path)
                log.warning("jobs wait for task %s, which cannot be imported here: %s", path, exc)
            else:
                found.append(path)
        return found

    def start(self) -> None:
        """Look again every ``interval`` seconds, on a thread of its own, until ``stop``."""
        self._thread = threading.Thread(target=self._loop, name="jobkit-django-tasks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            self.run_once()


def _waiting_tasks(stats: dict[str, Any]) -> list[str]:
    """The module paths of the tasks that have pending or running jobs."""
    waiting = []
    for name, counts in stats.get("by_type", {}).items():
        if name.startswith(PREFIX) and (counts.get(JobState.PENDING) or counts.get(JobState.RUNNING)):
            waiting.append(name[len(PREFIX) :])
    return sorted(waiting)

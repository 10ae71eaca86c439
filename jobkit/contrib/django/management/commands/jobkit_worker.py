"""``manage.py jobkit_worker``: jobkit's worker for a Django project's tasks.

It imports every installed app's ``tasks`` module (and the modules in the backend's
``OPTIONS["TASK_MODULES"]``), and the module of every task that already has jobs waiting, so each
task's job type is registered, then runs jobkit's worker: concurrent, rescuing the jobs of workers
that died, draining on SIGTERM.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.tasks import task_backends
from django.utils.module_loading import autodiscover_modules, import_string

from jobkit import JobState
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
        for path in _waiting_tasks(queue.stats()):
            try:
                import_string(path)  # defining the task registers its job type
            except ImportError as exc:
                log.warning("jobs wait for task %s, which cannot be imported here: %s", path, exc)
        tasks = [name for name in queue.job_types() if name.startswith(PREFIX)]
        self.stdout.write(
            f"jobkit worker {queue.worker.id} for TASKS[{alias!r}]: {len(tasks)} tasks, "
            f"concurrency {queue.settings.concurrency}, queues {', '.join(queue.settings.queues or ('all',))}"
        )
        try:
            status = queue.run()
        finally:
            queue.close()
        if status:
            raise SystemExit(status)


def _waiting_tasks(stats: dict[str, Any]) -> list[str]:
    """The module paths of the tasks that have pending or running jobs."""
    waiting = []
    for name, counts in stats.get("by_type", {}).items():
        if name.startswith(PREFIX) and (counts.get(JobState.PENDING) or counts.get(JobState.RUNNING)):
            waiting.append(name[len(PREFIX) :])
    return sorted(waiting)

"""One adapter per library, each driving it through its documented public API."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

#: library name -> (module, the databases it runs on)
LIBRARIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "jobkit": ("benchmarks.libs.jobkit_lib", ("sqlite", "postgres")),
    "procrastinate": ("benchmarks.libs.procrastinate_lib", ("postgres",)),
    "pgqueuer": ("benchmarks.libs.pgqueuer_lib", ("postgres",)),
    "oban": ("benchmarks.libs.oban_lib", ("postgres",)),
    "huey": ("benchmarks.libs.huey_lib", ("sqlite",)),
    "rq": ("benchmarks.libs.rq_lib", ("redis",)),
    "celery": ("benchmarks.libs.celery_lib", ("redis",)),
}

#: libraries whose adapter can seed W7's finished and future rows (``setup_with_history``); seeding
#: a peer would mean writing its private tables by hand, so W7 measures jobkit alone
SEEDS_HISTORY = ("jobkit",)


def load(name: str, db: str, workdir: Path) -> Any:
    """Import a library's adapter module and build its adapter for ``db``."""
    module = importlib.import_module(LIBRARIES[name][0])
    return module.Adapter(db, workdir)

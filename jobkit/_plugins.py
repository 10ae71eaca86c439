"""Plugins: job types that packages register through the ``jobkit.plugins`` entry-point group (docs/plugins.md)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from jobkit._registry import JobType, handler_type, lookup, register

#: The entry-point group plugin packages list their job modules (or set-up functions) in.
PLUGIN_GROUP = "jobkit.plugins"
_loaded_plugins: set[str] = set()


class Registrar:
    """What a plugin's set-up function receives: ``register_handler`` as on the queue.

    Example (a plugin's ``pyproject.toml``: ``[project.entry-points."jobkit.plugins"] scrape = "scrape:setup"``)::

        def setup(registry):
            registry.register_handler("web-scraping", Scraper(), queue="scrape")
    """

    def register_handler(self, name: str, handler: Any, **options: Any) -> None:
        """Register a job type from a callable or an object with ``process(args)`` (and ``on_error``)."""
        register(handler_type(name, handler, **options))


def load_plugins(warn: Callable[[str], None] | None = None) -> list[str]:
    """Load every ``jobkit.plugins`` entry point not loaded yet in this process; returns their names.

    An entry point names a module (imported: its ``@job`` classes register themselves) or a
    callable, called with a :class:`Registrar`. A plugin that fails to load is reported through
    ``warn`` and skipped, so one broken package cannot stop a worker; it is tried again next time.
    """
    loaded: list[str] = []
    for plugin in entry_points(group=PLUGIN_GROUP):
        key = f"{plugin.name}={plugin.value}"
        if key in _loaded_plugins:
            continue
        try:
            target = plugin.load()
            if callable(target) and not inspect.isclass(target):
                target(Registrar())
        except Exception as exc:
            if warn is not None:
                warn(f"plugin {plugin.name!r} ({plugin.value}) failed to load: {type(exc).__name__}: {exc}")
            continue
        _loaded_plugins.add(key)
        loaded.append(plugin.name)
    return loaded


def require_type(name: str, warn: Callable[[str], None] | None = None) -> JobType:
    """The job type registered as ``name``, loading plugins first if it is not (yet); LookupError if none is."""
    job_type = lookup(name) if isinstance(name, str) else None
    if job_type is None and isinstance(name, str):
        load_plugins(warn)  # a plugin's type, in a process that has not loaded plugins yet
        job_type = lookup(name)
    if job_type is None:
        raise LookupError(f"no job type named {name!r} is registered")
    return job_type

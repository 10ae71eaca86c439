"""Test helpers that watch a queue: the event log every integration test waits on."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from jobkit import JobQueue


class EventLog:
    """Records every event a queue emits; tests wait on them with a timeout instead of sleeping."""

    def __init__(self, queue: JobQueue) -> None:
        self.events: list[Mapping[str, Any]] = []
        self._cv = threading.Condition()
        self.close = queue.subscribe(self._record)

    def _record(self, event: Mapping[str, Any]) -> None:
        with self._cv:
            self.events.append(event)
            self._cv.notify_all()

    def wait_for(self, job_id: int, kind: str, timeout: float = 15, **fields: Any) -> Mapping[str, Any]:
        """The first event of ``kind`` for ``job_id`` whose fields match, waiting up to ``timeout``."""

        def find() -> Mapping[str, Any] | None:
            for event in self.events:
                matches = all(event.get(k) == v for k, v in fields.items())
                if event.get("job_id") == job_id and event.get("type") == kind and matches:
                    return event
            return None

        with self._cv:
            found = self._cv.wait_for(find, timeout)
        assert found, f"no {kind} event {fields} for job {job_id} within {timeout}s; saw {self.of(job_id)}"
        return found

    def of(self, job_id: int, kind: str | None = None) -> list[Mapping[str, Any]]:
        """The events recorded so far for one job (of one kind)."""
        with self._cv:
            return [e for e in self.events if e.get("job_id") == job_id and kind in (None, e.get("type"))]

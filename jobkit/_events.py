"""The event bus behind ``queue.subscribe``: each listener runs on a thread of its own, never the worker's.

``emit`` only puts the event on each subscriber's queue, so a slow listener delays
neither the worker nor the other listeners; a listener that raises is logged and stays
subscribed; a listener that falls more than ``MAX_BACKLOG`` events behind loses the newest
ones (counted in ``dropped`` and logged) rather than growing memory without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("jobkit.events")

Listener = Callable[[dict[str, Any]], None]

#: Events buffered per listener before new ones are dropped (and the drop logged).
MAX_BACKLOG = 10_000

_FLUSH = "__flush__"


class _Subscription:
    """One listener, its backlog and its delivery thread."""

    def __init__(self, listener: Listener, backlog: int) -> None:
        self.listener = listener
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(backlog)
        self.dropped = 0
        self.closed = False
        self.thread = threading.Thread(target=self._deliver, name="jobkit-events", daemon=True)
        self.thread.start()

    def offer(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("event listener %r is too slow; %d events dropped so far", self.listener, self.dropped)

    def _deliver(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            if event.get("type") == _FLUSH:
                event["done"].set()
                continue
            if self.closed:
                return  # unsubscribed: nothing more reaches the listener
            try:
                self.listener(event)
            except Exception:
                log.exception("event listener %r raised; it stays subscribed", self.listener)


class EventBus:
    """Delivers state events to subscribers, in order per subscriber.

    Example::

        unsubscribe = queue.subscribe(lambda event: print(event["type"], event["job_id"]))
        ...
        unsubscribe()
    """

    def __init__(self, backlog: int = MAX_BACKLOG) -> None:
        self._backlog = backlog
        self._subscriptions: list[_Subscription] = []
        self._taps: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Events dropped so far because a listener was too far behind."""
        with self._lock:
            return sum(s.dropped for s in self._subscriptions)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener (called on its own thread with each event dict); returns a function that removes it."""
        subscription = _Subscription(listener, self._backlog)
        with self._lock:
            self._subscriptions = [*self._subscriptions, subscription]

        def unsubscribe() -> None:
            with self._lock:
                if subscription not in self._subscriptions:
                    return
                self._subscriptions = [s for s in self._subscriptions if s is not subscription]
            subscription.closed = True
            try:
                subscription.queue.put_nowait(None)  # wakes an idle delivery thread so it can end
            except queue.Full:
                pass  # a busy one sees ``closed`` after its current event

        return unsubscribe

    def tap(self, hook: Callable[[dict[str, Any]], None]) -> None:
        """Call ``hook(event)`` synchronously in the emitting thread (internal wake-ups; must be quick, never raise)."""
        with self._lock:
            self._taps = [*self._taps, hook]

    def emit(self, event: dict[str, Any]) -> None:
        """Hand an event to every subscriber; never blocks the caller."""
        # Reading the lists without the lock is safe: they are replaced, never mutated.
        for hook in self._taps:
            try:
                hook(event)
            except Exception:
                log.exception("internal event hook raised")
        for subscription in self._subscriptions:
            subscription.offer(dict(event))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every event emitted so far has been delivered to every listener (for tests)."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        marks = []
        for subscription in subscriptions:
            done = threading.Event()
            try:
                subscription.queue.put({"type": _FLUSH, "done": done}, timeout=timeout)
            except queue.Full:
                continue
            marks.append(done)
        for done in marks:
            done.wait(timeout)

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from jobkit._vocabulary import Event

log = logging.getLogger("jobkit.events")

#: A subscriber: called with each :class:`~jobkit._vocabulary.Event` (a read-only mapping).
Listener: TypeAlias = Callable[[Event], None]
#: What the bus carries: the events jobkit emits, or any mapping a test hands it.
_Item: TypeAlias = Mapping[str, Any]


class EnqueueTrace(Protocol):
    """One traced enqueue in flight: the context to store with its jobs, ended once they are stored."""

    #: Trace-context headers as JSON text, stored with every job of the enqueue (None: store nothing).
    context: str | None

    def end(self, job_ids: Sequence[int], error: BaseException | None) -> None:
        """The jobs were stored (``job_ids``) or the enqueue failed (``error``)."""


class EnqueueTracer(Protocol):
    """What ``queue.enqueue_tracer`` is set to by a tracing integration (jobkit.contrib.otel)."""

    def begin(self, name: str, queue: str, count: int) -> EnqueueTrace:
        """An enqueue of ``count`` jobs of type ``name`` into ``queue`` is about to be written."""


#: Events buffered per listener before new ones are dropped (and the drop logged).
MAX_BACKLOG = 10_000


@dataclass(frozen=True, slots=True)
class _Flush:
    """A marker put behind the events emitted so far; set once the delivery thread reaches it."""

    done: threading.Event = field(default_factory=threading.Event)


class _Subscription:
    """One listener, its backlog and its delivery thread."""

    def __init__(self, listener: Callable[[Any], None], backlog: int) -> None:
        self.listener = listener
        self.queue: queue.Queue[_Item | _Flush | None] = queue.Queue(backlog)
        self.dropped = 0
        self.closed = False
        self.thread = threading.Thread(target=self._deliver, name="jobkit-events", daemon=True)
        self.thread.start()

    def offer(self, event: _Item) -> None:
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
            if isinstance(event, _Flush):
                event.done.set()
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
        self._taps: tuple[Callable[[Any], None], ...] = ()
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Events dropped so far because a listener was too far behind."""
        with self._lock:
            return sum(s.dropped for s in self._subscriptions)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener (called on its own thread with each event); returns a function that removes it."""
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

    def tap(self, hook: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``hook(event)`` synchronously in the emitting thread; returns a function that removes it.

        For observers that must see every event at once and cheaply (wake-ups, metrics, tracing):
        no thread or backlog of their own, so a hook must be quick. One that raises is logged and
        stays tapped. With no hook tapped, emitting costs one loop over an empty tuple.
        """
        with self._lock:
            self._taps = (*self._taps, hook)

        def untap() -> None:
            with self._lock:
                self._taps = tuple(h for h in self._taps if h is not hook)

        return untap

    def emit(self, event: Event | _Item) -> None:
        """Hand an event to every subscriber; never blocks the caller.

        An :class:`Event` is immutable and shared by every subscriber; any other mapping is
        copied for each, so one listener cannot change what the next one sees.
        """
        # Reading the sequences without the lock is safe: they are replaced, never mutated.
        for hook in self._taps:
            try:
                hook(event)
            except Exception:
                log.exception("internal event hook raised")
        for subscription in self._subscriptions:
            subscription.offer(event if isinstance(event, Event) else dict(event))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every event emitted so far has been delivered to every listener (for tests)."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        marks = []
        for subscription in subscriptions:
            mark = _Flush()
            try:
                subscription.queue.put(mark, timeout=timeout)
            except queue.Full:
                continue
            marks.append(mark.done)
        for done in marks:
            done.wait(timeout)

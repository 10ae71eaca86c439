"""Live updates: one subscription to the queue's changes, fanned out to every open event stream.

The queue tells of changes from this process (its event bus) and from others (PostgreSQL
LISTEN/NOTIFY, SQLite's data_version and doorbells), see ``JobQueue.on_change``. The hub holds
that one subscription for the whole dashboard and wakes each browser's server-sent event
stream; the browser then fetches its page again and swaps the regions marked live. A stream
sends at most one change per :data:`MIN_INTERVAL`, however busy the queue is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from jobkit._queue import JobQueue

#: Seconds between two change messages on one stream (coalescing bursts).
MIN_INTERVAL = 0.3
#: Seconds between keep-alive comments on an idle stream (proxies close silent connections).
KEEP_ALIVE = 15.0


class Hub:
    """Wakes every open stream when the queue may have changed.

    :meth:`shutdown` may run in a signal handler, and the queue calls back on its own threads:
    neither takes a lock. The set of streams is replaced, never changed in place, so reading it
    needs none; the lock only serialises joining, leaving and the one subscription.
    """

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._streams: frozenset[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = frozenset()
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        #: Set by :meth:`shutdown`: every stream ends at once (a stopping server waits for open requests).
        self.closing = False

    def _changed(self) -> None:
        for loop, event in self._streams:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that stream's loop has closed

    def _join(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._streams = self._streams | {entry}
            if self._unsubscribe is None:
                self._unsubscribe = self.queue.on_change(self._changed)
        return entry

    def _leave(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._streams = self._streams - {entry}

    def shutdown(self) -> None:
        """End every open stream now (the server is stopping); browsers reconnect to the next server."""
        self.closing = True
        self._changed()

    def close(self) -> None:
        """Drop the queue subscription (the application is shutting down)."""
        with self._lock:
            undo, self._unsubscribe = self._unsubscribe, None
        if undo is not None:
            undo()

    async def stream(self, disconnected: Callable[[], object]) -> AsyncIterator[str]:
        """Server-sent events: ``change`` whenever the queue may have changed, comments to keep alive."""
        entry = self._join()
        _, event = entry
        try:
            yield "retry: 2000\n\n"
            while not self.closing:
                try:
                    await asyncio.wait_for(event.wait(), KEEP_ALIVE)
                except TimeoutError:
                    if await _check(disconnected):
                        return
                    yield ": keep-alive\n\n"
                    continue
                event.clear()
                if self.closing:
                    return
                yield "event: change\ndata: {}\n\n"
                await asyncio.sleep(MIN_INTERVAL)
        finally:
            self._leave(entry)


async def _check(disconnected: Callable[[], object]) -> bool:
    result = disconnected()
    if asyncio.iscoroutine(result):
        result = await result
    return bool(result)

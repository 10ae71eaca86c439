"""The notifier: one per queue, the one place that hears about changes made by other processes.

It serves two kinds of interest. Workers subscribe to *wake-ups* (jobs may have been
enqueued, resumed or retried: try to claim); handles *watch* single jobs (their progress or
outcome may have changed: read them again). A :class:`Notifier` is a service owned by whoever
made it (the queue facade, or a worker made without one): ``start()`` begins listening on a
thread of its own, ``stop()`` ends it and releases everything.

How a database is heard is its dialect's choice, a :class:`Listener`:

- PostgreSQL (listen_postgres.py): one LISTEN connection for both kinds of interest, on the
  enqueue channel and the events channel, re-established with backoff. The store's writes
  send the NOTIFY in the transaction that made the change, so it fires once that is visible.
- SQLite (listen_sqlite.py): while a worker is subscribed, a ``PRAGMA data_version`` poll and
  a doorbell socket that other processes ring right after they commit (doorbell.py). Job
  watches are not pushed: handles poll at a short interval, woken early by this process's
  own changes only (:meth:`Notifier.signal`).

Everything here is a hint: workers and handles poll as well, so a dropped connection or a
missed change costs latency, never a job.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

Wake = Callable[[str], None]

#: Seconds ``stop()`` waits for the listening thread to end.
STOP_WAIT = 3.0


class Audience(Protocol):
    """What a listener reports to (the notifier it runs for)."""

    #: Set by the listener while other processes' job changes are pushed to watches.
    connected: threading.Event
    #: Set by the listener while other processes' enqueues reach the wake-up subscribers.
    listening: threading.Event

    def wanted(self) -> bool:
        """Whether anyone in this process wants wake-ups (a worker is subscribed)."""

    def wake(self, payload: str) -> None:
        """Jobs may have become claimable (``payload``: an enqueue's run time if ahead, else "")."""

    def changed(self, job_id: int) -> None:
        """Job ``job_id`` may have changed."""

    def missed(self) -> None:
        """Changes may have gone unheard (a reconnect): every watch should look again."""


class Listener(Protocol):
    """One database's way to hear other processes, and to tell them; the dialect picks it."""

    def listen(self, audience: Audience, stop: threading.Event) -> None:
        """Hear changes until ``stop`` is set (runs on the notifier's thread; survives its own errors)."""

    def nudge(self) -> None:
        """Make :meth:`listen` look again, now, at ``stop`` and at whether wake-ups are wanted."""

    def hang_up(self) -> None:
        """Nobody wants wake-ups any more: stop being reachable at once (the process may be exiting)."""

    def ring(self, payload: str) -> None:
        """After this process committed jobs: tell the processes the database itself does not tell."""

    def close(self) -> None:
        """Release what :meth:`ring` holds (a later ring opens it again)."""


class Watch:
    """One waiter's interest in one job: :meth:`wait` returns early when the job may have changed.

    Register the watch before reading the job, then wait after reading: a change in between
    is not lost, it makes the next wait return at once.
    """

    def __init__(self, job_id: int, pushed: threading.Event, forget: Callable[[Watch], None]) -> None:
        self.job_id = job_id
        self._pushed = pushed
        self._forget = forget
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._async: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def live(self) -> bool:
        """True while changes by any process are pushed to this watch (PostgreSQL LISTEN is connected)."""
        return self._pushed.is_set()

    def signal(self) -> None:
        """Wake the waiter (called by the notifier's thread or an in-process writer)."""
        self._event.set()
        with self._lock:
            waiters = list(self._async)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that loop is closed; its waiter is gone

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; returns whether a change was signalled."""
        fired = self._event.wait(max(0.0, timeout))
        self._event.clear()
        return fired

    async def wait_async(self, timeout: float) -> bool:
        """Async twin of :meth:`wait`."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._async.append(entry)
        try:
            if self._event.is_set():
                return True
            try:
                await asyncio.wait_for(event.wait(), max(0.0, timeout))
            except TimeoutError:
                return False
            return True
        finally:
            with self._lock:
                self._async.remove(entry)
            self._event.clear()

    def close(self) -> None:
        """Stop watching."""
        self._forget(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Notifier:
    """Wake-ups for workers and watches for handles, from this process and from others.

    Example::

        notifier = open_notifier(store)
        notifier.start()
        unsubscribe = notifier.on_wake(producer.notify)   # called with "" or an enqueue's run time
        with notifier.watch(job_id) as watch:             # wakes when the job may have changed
            watch.wait(1.0)
        unsubscribe()
        notifier.stop()
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        #: Set while changes made by other processes are pushed to watches (PostgreSQL LISTEN is up).
        self.connected = threading.Event()
        #: Set while other processes' enqueues reach the wake-up subscribers: LISTEN is up
        #: (PostgreSQL), or the data_version connection and the doorbell are open (SQLite).
        self.listening = threading.Event()
        self._wakes: tuple[Wake, ...] = ()
        self._changes: tuple[Callable[[int | None], None], ...] = ()
        self._watches: dict[int, set[Watch]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Each run has a stop flag of its own: a thread that outlived stop()'s wait still ends.
        self._stop = threading.Event()

    # -- the service ---------------------------------------------------------------------

    def start(self) -> None:
        """Begin listening on a thread of its own; does nothing when already started."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="jobkit-notifier", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop listening and release the connection and sockets; ``start()`` may begin again."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        self.listener.nudge()
        if thread is not None:
            thread.join(timeout=STOP_WAIT)
        self.listener.close()
        self._unheard()

    @property
    def running(self) -> bool:
        """Whether the listening thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self, stop: threading.Event) -> None:
        try:
            self.listener.listen(self, stop)
        finally:
            self._unheard()

    def _unheard(self) -> None:
        self.connected.clear()
        self.listening.clear()

    # -- interest --------------------------------------------------------------------------

    def on_wake(self, wake: Wake) -> Callable[[], None]:
        """Call ``wake(payload)`` whenever jobs may have become claimable; returns the unsubscribe function."""
        with self._lock:
            self._wakes = (*self._wakes, wake)
        self.listener.nudge()

        def unsubscribe() -> None:
            with self._lock:
                self._wakes = tuple(w for w in self._wakes if w is not wake)
                last = not self._wakes
            if last:
                self.listener.hang_up()
            self.listener.nudge()

        return unsubscribe

    def on_change(self, change: Callable[[int | None], None]) -> Callable[[], None]:
        """Call ``change(job_id)`` whenever another process may have changed a job (None: which is unknown).

        On PostgreSQL every job change is pushed with its id; SQLite tells only that the database
        changed, through the wake-ups (subscribe to :meth:`on_wake` as well to hear those).
        """
        with self._lock:
            self._changes = (*self._changes, change)

        def unsubscribe() -> None:
            with self._lock:
                self._changes = tuple(c for c in self._changes if c is not change)

        return unsubscribe

    def announce(self, payload: str = "", *, committed: bool = True) -> None:
        """Jobs this process wrote may be claimable (``payload``: the earliest run time if ahead, else "").

        Wakes this process's workers; once ``committed``, tells other processes the database
        does not tell itself (SQLite's doorbells; PostgreSQL's writers sent NOTIFY in the transaction).
        """
        self.wake(payload)
        if committed:
            self.listener.ring(payload)

    def watch(self, job_id: int) -> Watch:
        """Start watching one job; close the returned watch when done."""
        watch = Watch(job_id, self.connected, self._forget)
        with self._lock:
            self._watches.setdefault(job_id, set()).add(watch)
        return watch

    def signal(self, job_id: int) -> None:
        """Wake every watch on ``job_id`` (an in-process writer changed it)."""
        # Every job's every event comes through here, and almost none is watched: look first
        # without the lock (a dict read is atomic), then copy the watches under it.
        if job_id not in self._watches:
            return
        with self._lock:
            watches = list(self._watches.get(job_id, ()))
        for watch in watches:
            watch.signal()

    def _forget(self, watch: Watch) -> None:
        with self._lock:
            group = self._watches.get(watch.job_id)
            if group is not None:
                group.discard(watch)
                if not group:
                    del self._watches[watch.job_id]

    # -- the audience of the listener ------------------------------------------------------

    def wanted(self) -> bool:
        """Whether a worker of this process is subscribed to wake-ups."""
        return bool(self._wakes)

    def wake(self, payload: str) -> None:
        """Call every wake-up subscriber with ``payload``."""
        for wake in self._wakes:
            wake(payload)

    def changed(self, job_id: int) -> None:
        """Another process changed job ``job_id``: wake its watches and the change subscribers."""
        self.signal(job_id)
        for change in self._changes:
            change(job_id)

    def missed(self) -> None:
        """Wake every watch (after a reconnect, notifications may have been missed)."""
        for change in self._changes:
            change(None)
        with self._lock:
            watches = [w for group in self._watches.values() for w in group]
        for watch in watches:
            watch.signal()

"""Job-change notifications for waiting handles: NOTIFY on the write side, LISTEN on the waiting side.

Writers that change what a handle shows (progress from the reporter, outcomes from the
completer, admin actions) send the ids of the jobs they changed on a per-database events
channel, inside the transaction that made the change, so the notification fires only once
the change is committed and visible. Handles in any process wait on a :class:`Watch`
instead of polling. Notifications are hints: handles still poll, slowly, as a fallback
(a dropped LISTEN connection or a change nobody notified, such as a rescue, costs latency,
never correctness). SQLite has no NOTIFY: its watches are never live, and handles poll at
a short interval; in-process changes still wake them through :meth:`JobWatcher.signal`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from types import TracebackType

import sqlalchemy as sa

from jobkit._store.store import Store, id_payloads

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed; SQLite needs none of it
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger("jobkit.listen")

HEALTH_CHECK_EVERY = 30.0

_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")
_PROGRESS = sa.text(
    "UPDATE jobkit_jobs SET progress = :progress, updated_at = :now "
    "WHERE id = :id AND worker_id = :worker AND lease = :lease AND status = 'running' RETURNING id"
)


def notify_jobs(store: Store, conn: sa.Connection, job_ids: Iterable[int]) -> None:
    """Queue a notification for these jobs in ``conn``'s transaction (PostgreSQL; a no-op on SQLite)."""
    if not store.is_postgres:
        return
    channel = store.events_channel
    for payload in id_payloads(job_ids):
        conn.execute(_NOTIFY, {"channel": channel, "payload": payload})


def write_progress(store: Store, job_id: int, worker: str, lease: int, progress: str, now: float) -> bool:
    """Write a running job's progress, fenced by its lease, and notify waiters; returns whether the lease held."""

    def run() -> bool:
        with store.write() as conn:
            params = {"id": job_id, "worker": worker, "lease": lease, "progress": progress, "now": now}
            took = conn.execute(_PROGRESS, params).first() is not None
            if took:
                notify_jobs(store, conn, [job_id])
            return took

    # Progress is retried briefly only: the reporter keeps it and writes it again later.
    return store._retry_short(run)


class Watch:
    """One waiter's interest in one job: :meth:`wait` returns early when the job may have changed.

    Register the watch before reading the job, then wait after reading: a change in between
    is not lost, it makes the next wait return at once.
    """

    def __init__(self, watcher: JobWatcher, job_id: int) -> None:
        self.job_id = job_id
        self._watcher = watcher
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._async: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def live(self) -> bool:
        """True while changes by any process are pushed to this watch (PostgreSQL LISTEN is connected)."""
        return self._watcher.connected.is_set()

    def signal(self) -> None:
        """Wake the waiter (called by the watcher's thread or an in-process writer)."""
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
        self._watcher._forget(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class JobWatcher:
    """Hands out :class:`Watch` objects and signals them: from PostgreSQL LISTEN, and from in-process events.

    The LISTEN connection is opened on the first watch (PostgreSQL only) and kept until :meth:`close`.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.channel = store.events_channel
        self.connected = threading.Event()
        self._watches: dict[int, set[Watch]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, job_id: int) -> Watch:
        """Start watching one job; close the returned watch when done."""
        watch = Watch(self, job_id)
        with self._lock:
            self._watches.setdefault(job_id, set()).add(watch)
            if self.store.is_postgres and self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._listen_loop, name="jobkit-job-watcher", daemon=True)
                self._thread.start()
        return watch

    def signal(self, job_id: int) -> None:
        """Wake every watch on ``job_id``."""
        # Every job's every event comes through here, and almost none is watched: look first
        # without the lock (a dict read is atomic), then copy the watches under it.
        if job_id not in self._watches:
            return
        with self._lock:
            watches = list(self._watches.get(job_id, ()))
        for watch in watches:
            watch.signal()

    def signal_all(self) -> None:
        """Wake every watch (after a reconnect, notifications may have been missed)."""
        with self._lock:
            watches = [w for group in self._watches.values() for w in group]
        for watch in watches:
            watch.signal()

    def close(self) -> None:
        """Stop listening and close the LISTEN connection."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=3)
        self.connected.clear()

    def _forget(self, watch: Watch) -> None:
        with self._lock:
            group = self._watches.get(watch.job_id)
            if group is not None:
                group.discard(watch)
                if not group:
                    del self._watches[watch.job_id]

    def _dispatch(self, payload: str) -> None:
        for part in payload.split(","):
            try:
                job_id = int(part)
            except ValueError:
                continue
            self.signal(job_id)

    def _conninfo(self) -> str:
        url = self.store.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _listen_loop(self) -> None:
        delay = 0.1
        logged = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo(), autocommit=True, keepalives=1, keepalives_idle=10, connect_timeout=10
                ) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.connected.set()
                    if logged:
                        log.warning("job-events LISTEN connection re-established")
                        logged = False
                    delay = 0.1
                    self.signal_all()
                    checked = time.monotonic()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.25):
                            self._dispatch(notify.payload)
                        if time.monotonic() - checked > HEALTH_CHECK_EVERY:
                            conn.execute("SELECT 1")
                            checked = time.monotonic()
            except Exception as exc:
                self.connected.clear()
                if not logged and not self._stop.is_set():
                    log.warning("job-events LISTEN connection lost (%s); handles poll meanwhile", exc)
                    logged = True
                self.signal_all()
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        self.connected.clear()

"""Wake-up sources that need a raw driver connection: PostgreSQL LISTEN and SQLite's data_version.

Both are hints only: the worker always polls as well, so a dropped LISTEN
connection or a missed change costs latency, never a job.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed; SQLite needs none of it
    psycopg = None  # type: ignore[assignment]

from jobkit._store.store import Store

log = logging.getLogger("jobkit.listen")

HEALTH_CHECK_EVERY = 30.0


class ChangeWatcher:
    """Calls ``on_change(payload)`` when jobs may have been enqueued by any process.

    PostgreSQL: one LISTEN connection per process, re-established when it drops.
    SQLite: ``PRAGMA data_version`` on a dedicated connection every ``interval`` seconds,
    which changes whenever another connection commits.
    """

    def __init__(self, store: Store, on_change: Callable[[str], None], interval: float = 0.05) -> None:
        self.store = store
        self.on_change = on_change
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        """Start watching in a daemon thread."""
        target = self._listen_loop if self.store.is_postgres else self._sqlite_loop
        self._thread = threading.Thread(target=target, name="jobkit-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _sqlite_loop(self) -> None:
        database = self.store.engine.url.database or ""
        conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            self.connected.set()
            while not self._stop.wait(self.interval):
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error as exc:
                    log.warning("data_version check failed: %s", exc)
                    continue
                if version != last:
                    last = version
                    self.on_change("")
        finally:
            conn.close()

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
                    conn.execute(f'LISTEN "{self.store.channel}"')
                    self.connected.set()
                    if logged:
                        log.warning("LISTEN connection re-established")
                        logged = False
                    delay = 0.1
                    # A missed notification while reconnecting is covered by an immediate poll.
                    self.on_change("")
                    checked = time.monotonic()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            self.on_change(notify.payload)
                        if time.monotonic() - checked > HEALTH_CHECK_EVERY:
                            # Keepalives catch dead peers; this catches a server that dropped us politely.
                            conn.execute("SELECT 1")
                            checked = time.monotonic()
            except psycopg.Error as exc:
                self.connected.clear()
                if not logged:
                    log.warning("LISTEN connection lost (%s); polling continues, reconnecting", exc)
                    logged = True
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("LISTEN loop crashed; restarting")
                time.sleep(1)

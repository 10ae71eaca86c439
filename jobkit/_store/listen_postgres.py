"""PostgreSQL's listener: one LISTEN connection per notifier, on the enqueue and the events channel.

Writers need nothing from it: every NOTIFY is sent by the store inside the transaction that
made the change (enqueues on the enqueue channel with their run time, completions, progress
and admin actions on the events channel with the ids of the jobs they changed).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from jobkit._store.notify import Audience

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed; SQLite needs none of it
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger("jobkit.listen")

#: Seconds between two checks that the server still answers on the LISTEN connection.
HEALTH_CHECK_EVERY = 30.0

#: How long the loop waits for a notification before it looks whether it should stop.
LISTEN_TICK = 0.25


class PostgresListener:
    """Hears NOTIFY on ``channel`` (wake-ups) and ``events_channel`` (changed job ids) over one connection."""

    def __init__(self, conninfo: str, channel: str, events_channel: str) -> None:
        self._conninfo = conninfo
        self.channel = channel
        self.events_channel = events_channel

    def listen(self, audience: Audience, stop: threading.Event) -> None:
        """Hold the LISTEN connection until ``stop``; reconnect with backoff when it drops."""
        delay = 0.1
        lost = False
        while not stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, keepalives=1, keepalives_idle=10, connect_timeout=10
                ) as conn:
                    conn.execute(f'LISTEN "{self.channel}"; LISTEN "{self.events_channel}"')
                    audience.connected.set()
                    audience.listening.set()
                    if lost:
                        log.warning("LISTEN connection re-established")
                        lost = False
                    delay = 0.1
                    # What was sent while nobody listened is covered by an immediate look.
                    audience.wake("")
                    audience.missed()
                    self._serve(conn, audience, stop)
            except psycopg.Error as exc:
                if not lost and not stop.is_set():
                    log.warning("LISTEN connection lost (%s); polling continues, reconnecting", exc)
                    lost = True
            except Exception:
                log.exception("LISTEN loop crashed; restarting")
                delay = max(delay, 1.0)
            audience.connected.clear()
            audience.listening.clear()
            if stop.is_set():
                return
            audience.missed()
            stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _serve(self, conn: psycopg.Connection[Any], audience: Audience, stop: threading.Event) -> None:
        checked = time.monotonic()
        while not stop.is_set():
            for notify in conn.notifies(timeout=LISTEN_TICK):
                self._dispatch(audience, notify.channel, notify.payload)
            if time.monotonic() - checked > HEALTH_CHECK_EVERY:
                # Keepalives catch dead peers; this catches a server that dropped us politely.
                conn.execute("SELECT 1")
                checked = time.monotonic()

    def _dispatch(self, audience: Audience, channel: str, payload: str) -> None:
        if channel != self.events_channel:
            audience.wake(payload)
            return
        for part in payload.split(","):
            try:
                job_id = int(part)
            except ValueError:
                continue
            audience.changed(job_id)

    def nudge(self) -> None:
        """Nothing to do: the loop looks at its stop flag every ``LISTEN_TICK``."""

    def hang_up(self) -> None:
        """Nothing to do: the connection serves the watches too, and costs nothing while idle."""

    def ring(self, payload: str) -> None:
        """Nothing to do: the NOTIFY went out with the transaction."""

    def close(self) -> None:
        """Nothing to release outside :meth:`listen`."""

"""SQLite's listener: ``PRAGMA data_version`` polls and a doorbell while a worker waits, doorbells rung after commits.

SQLite has no NOTIFY. While a worker of this process is subscribed, the notifier's thread
holds a connection of its own, whose ``PRAGMA data_version`` changes whenever another
connection commits, and a doorbell socket (doorbell.py) that other processes ring right
after they commit an enqueue; either wakes the worker. While nobody is subscribed it holds
neither and sleeps until nudged. Job watches are never pushed here: handles poll.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import sqlite3
import threading
import time

from jobkit._store.doorbell import Doorbell, Ringer, bell_directory, sweep
from jobkit._store.notify import Audience

log = logging.getLogger("jobkit.listen")

#: Seconds between two looks at SQLite's data_version while a worker is subscribed.
SQLITE_POLL_INTERVAL = 0.05


class SqliteListener:
    """Wakes this process's workers on other processes' commits, and rings theirs after its own."""

    def __init__(self, database: str, interval: float | None = None) -> None:
        self.database = database
        #: Seconds between data_version polls (None: :data:`SQLITE_POLL_INTERVAL` when listening begins).
        self.interval = interval
        self._ringer = Ringer(bell_directory(database))
        self._run: _Run | None = None

    def listen(self, audience: Audience, stop: threading.Event) -> None:
        """Poll and listen for the doorbell while wake-ups are wanted, until ``stop``."""
        interval = SQLITE_POLL_INTERVAL if self.interval is None else self.interval
        run = _Run(self.database, interval, self._ringer)
        self._run = run
        try:
            while not stop.is_set():
                try:
                    run.watch(audience, stop)
                except Exception:
                    log.exception("SQLite change watcher failed; restarting it")
                    stop.wait(1.0)
        finally:
            if self._run is run:
                self._run = None
            run.close()

    def nudge(self) -> None:
        """Make the running :meth:`listen` look again at its stop flag and its audience."""
        run = self._run
        if run is not None:
            run.nudge()

    def hang_up(self) -> None:
        """Remove this process's doorbell socket now (the listening thread closes the socket itself)."""
        run = self._run
        if run is not None:
            run.hang_up()

    def ring(self, payload: str) -> None:
        """Ring every other process's doorbell of this database (never this process's own)."""
        run = self._run
        bell = None if run is None else run.doorbell
        self._ringer.ring(payload, skip=None if bell is None else bell.path)

    def close(self) -> None:
        """Close the sending socket (a later ring opens another)."""
        self._ringer.close()


class _Run:
    """One run of the listening thread: its nudge sockets, and its connection and doorbell while wanted."""

    def __init__(self, database: str, interval: float, ringer: Ringer) -> None:
        self.database = database
        self.interval = interval
        self.directory = ringer.directory
        #: This process's doorbell while it listens (this process's rings skip it).
        self.doorbell: Doorbell | None = None
        self._poke = socket.socketpair()
        for end in self._poke:
            end.setblocking(False)

    def nudge(self) -> None:
        with contextlib.suppress(OSError):  # full (a nudge is already waiting) or closed (the run ended)
            self._poke[1].send(b"!")

    def hang_up(self) -> None:
        bell = self.doorbell
        if bell is not None:
            bell.hang_up()

    def close(self) -> None:
        for end in self._poke:
            end.close()

    def watch(self, audience: Audience, stop: threading.Event) -> None:
        poke = self._poke[0]
        conn: sqlite3.Connection | None = None
        last = None
        next_poll = 0.0
        try:
            while not stop.is_set():
                if not audience.wanted():
                    # Nobody to wake: hold no connection and no doorbell, and sleep until nudged.
                    self._release(audience, conn)
                    conn = None
                    select.select([poke], [], [])
                    _drain(poke)
                    continue
                if conn is None:
                    conn = sqlite3.connect(self.database, check_same_thread=False, isolation_level=None)
                    last = conn.execute("PRAGMA data_version").fetchone()[0]
                    self._ring_in()
                    audience.listening.set()
                    next_poll = time.monotonic() + self.interval
                bell = self.doorbell
                waiting = [poke.fileno()] if bell is None else [poke.fileno(), bell.fileno()]
                ready, _, _ = select.select(waiting, [], [], max(0.0, next_poll - time.monotonic()))
                if poke.fileno() in ready:
                    _drain(poke)
                if bell is not None and bell.fileno() in ready:
                    for payload in dict.fromkeys(bell.drain()):  # repeats coalesced, order kept
                        audience.wake(payload)
                if time.monotonic() >= next_poll:
                    # Polled also while rung: a commit nobody rang for (an enqueue in the caller's
                    # transaction, a process of another user) is seen here.
                    next_poll = time.monotonic() + self.interval
                    try:
                        version = conn.execute("PRAGMA data_version").fetchone()[0]
                    except sqlite3.Error as exc:
                        log.warning("data_version check failed: %s", exc)
                        continue
                    if version != last:
                        last = version
                        audience.wake("")
        finally:
            self._release(audience, conn)

    def _ring_in(self) -> None:
        """Bind this process's doorbell, where the platform and the temporary directory allow one."""
        if self.directory is None:
            return
        try:
            self.doorbell = Doorbell(self.directory)
        except OSError as exc:
            log.warning("cannot listen for wake-ups from other processes (%s); polling only", exc)
            return
        # Workers killed without a chance to hang up leave sockets, of databases long gone too.
        sweep(self.directory.parent)

    def _release(self, audience: Audience, conn: sqlite3.Connection | None) -> None:
        audience.listening.clear()
        bell, self.doorbell = self.doorbell, None
        if bell is not None:
            bell.close()
        if conn is not None:
            conn.close()


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while sock.recv(64):
            pass

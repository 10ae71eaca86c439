"""SQLite wake-ups across processes: a directory of datagram sockets per database.

SQLite has no NOTIFY. ``PRAGMA data_version`` on a connection of its own changes whenever
another connection commits, but it has to be polled. So beside the poll, a process whose
worker waits for work binds one AF_UNIX datagram socket (its :class:`Doorbell`) in a
directory named for the database file, and a process that has committed an enqueue sends a
datagram of a few bytes to every doorbell there (:class:`Ringer`): an idle worker elsewhere
claims at once instead of at its next poll. Like NOTIFY it is a hint only: a datagram that
never arrives (a full socket buffer, a process with another temporary directory or of
another user, an enqueue in the caller's transaction, which rings nobody) costs latency,
never a job, because the poll goes on beside it.

The directory is ``<tempdir>/jobkit-<uid>/<hash of the database's real path>``, so a socket
path stays well within AF_UNIX's limit of about 107 bytes wherever the database lives. It is
private to its user (0700); one owned by someone else or open to others is never used. A
socket left behind by a process that died is removed by the first sender that finds nobody
listening on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import stat
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

log = logging.getLogger("jobkit.listen")

#: AF_UNIX socket paths longer than this are refused: sun_path holds 108 bytes with the NUL on
#: Linux, 104 on macOS and the BSDs.
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103
#: The longest socket name within a bell directory: "/<pid>-<12 hex>.sock".
MAX_NAME = 32
SUFFIX = ".sock"

#: A sender looks at the directory at most this often (seconds) for doorbells bound or removed,
#: and lists it again at the latest after RELIST even when its modification time says nothing
#: changed (a change in the same clock tick as a listing leaves the time as it was).
RECHECK = 0.05
RELIST = 1.0


def bell_directory(database: str) -> Path | None:
    """Where the doorbells of the SQLite file ``database`` live; None where there can be none."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):
        return None  # no AF_UNIX datagrams here (Windows): the data_version poll alone wakes workers
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # an in-memory or URI database: no file that other processes share by path
    real = os.path.realpath(database)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    directory = Path(tempfile.gettempdir()) / f"jobkit-{os.getuid()}" / digest
    if len(os.fsencode(directory)) + MAX_NAME > MAX_SOCKET_PATH:
        log.debug("temporary directory %s is too long for socket paths; SQLite workers poll only", directory)
        return None
    return directory


def _private(path: Path) -> bool:
    """Whether ``path`` is a real directory of this user that nobody else can write to."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _make_private(directory: Path) -> bool:
    for level in (directory.parent, directory):
        with contextlib.suppress(FileExistsError):
            os.mkdir(level, 0o700)
        if not _private(level):
            log.warning("%s is not a private directory of this user; SQLite workers poll only", level)
            return False
    return True


class Doorbell:
    """This process's listening socket in one database's bell directory; close it when done."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
        self._directory = directory
        self._hung_up = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            # A sender that removes the directory (its last doorbell left) may do so between our
            # mkdir and our bind: make it again then.
            for _ in range(3):
                if not _make_private(directory):
                    raise OSError(f"{directory} is not private")
                try:
                    self._sock.bind(os.fsencode(self.path))
                    break
                except FileNotFoundError:
                    continue
            else:
                raise OSError(f"cannot bind a socket in {directory}")
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        """The socket's descriptor, for ``select``."""
        return self._sock.fileno()

    def drain(self) -> list[str]:
        """Every payload waiting on the socket, oldest first (never blocks)."""
        payloads: list[str] = []
        while True:
            try:
                data = self._sock.recv(256)
            except (BlockingIOError, InterruptedError):
                return payloads
            payloads.append(data.decode("ascii", "replace"))

    def hang_up(self) -> None:
        """Let no sender find it any more: remove the socket file, and the directory if it was the last.

        Safe from any thread while another one still selects on the socket (see :meth:`close`).
        """
        if self._hung_up:
            return
        self._hung_up = True
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._directory)  # fails while other doorbells are there, as it should

    def close(self) -> None:
        """Stop listening: hang up, then close the socket."""
        self.hang_up()
        self._sock.close()


def sweep(parent: Path, limit: int = 64) -> int:
    """Remove doorbells nobody listens on (their processes died) under ``parent``, and emptied directories.

    A socket with a listener accepts a connect; one without refuses it, whichever process or
    PID namespace made it. Looks at no more than ``limit`` directories; returns how many
    sockets it removed.
    """
    removed = 0
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with os.scandir(parent) as directories:
            for count, directory in enumerate(directories):
                if count >= limit:
                    break
                if not directory.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(OSError), os.scandir(directory.path) as entries:
                    for entry in entries:
                        if not entry.name.endswith(SUFFIX):
                            continue
                        try:
                            probe.connect(os.fsencode(entry.path))
                        except ConnectionRefusedError:
                            with contextlib.suppress(OSError):
                                os.unlink(entry.path)
                                removed += 1
                        except OSError:
                            pass
                with contextlib.suppress(OSError):
                    os.rmdir(directory.path)
    except OSError:
        pass
    finally:
        probe.close()
    return removed


class Ringer:
    """Sends a payload to every doorbell of one database, but this process's own; safe across threads."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._targets: tuple[bytes, ...] = ()
        self._mtime = -1
        self._checked = float("-inf")
        self._listed = float("-inf")
        self._sock: socket.socket | None = None
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]

    def ring(self, payload: str, skip: Path | None = None) -> int:
        """Send ``payload`` (a few ASCII bytes) to the other doorbells; returns how many took it."""
        if self.directory is None:
            return 0
        targets = self._current()
        if not targets:
            return 0
        own = None if skip is None else os.fsencode(skip)
        data = payload.encode("ascii")
        sent = 0
        sock = self._socket()
        for target in targets:
            if target == own:
                continue
            try:
                sock.sendto(data, target)
                sent += 1
            except BlockingIOError:
                pass  # its buffer is full of wake-ups it has not read yet: one more adds nothing
            except ConnectionRefusedError:
                # Nobody is bound to it: the process that made it died without removing it.
                with contextlib.suppress(OSError):
                    os.unlink(target)
                self._forget(target)
            except FileNotFoundError:
                self._forget(target)
            except OSError as exc:
                log.debug("cannot ring %s: %s", target, exc)
        return sent

    def close(self) -> None:
        """Close the sending socket (a later ring opens another)."""
        with self._lock:
            sock, self._sock = self._sock, None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        if sock is not None:
            sock.close()

    def _socket(self) -> socket.socket:
        sock = self._sock
        if sock is not None:
            return sock
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
                # A queue that is never closed must not leave an unclosed socket for the collector.
                self._finalizer = weakref.finalize(self, self._sock.close)
            return self._sock

    def _forget(self, target: bytes) -> None:
        with self._lock:
            self._targets = tuple(t for t in self._targets if t != target)

    def _current(self) -> tuple[bytes, ...]:
        now = time.monotonic()
        if now - self._checked < RECHECK:
            return self._targets
        with self._lock:
            if now - self._checked < RECHECK:
                return self._targets
            self._checked = now
            assert self.directory is not None
            try:
                info = os.lstat(self.directory)
            except OSError:
                self._targets, self._mtime = (), -1
                return self._targets
            if info.st_mtime_ns == self._mtime and now - self._listed < RELIST:
                return self._targets
            if not _private(self.directory):
                self._targets = ()
                return self._targets
            try:
                with os.scandir(self.directory) as entries:
                    self._targets = tuple(os.fsencode(e.path) for e in entries if e.name.endswith(SUFFIX))
            except OSError:
                self._targets = ()
            self._mtime, self._listed = info.st_mtime_ns, now
            return self._targets

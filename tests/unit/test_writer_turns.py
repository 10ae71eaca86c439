"""WriterTurns: this process's SQLite writers take turns, and give up like SQLite's busy timeout."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from jobkit._store import is_transient
from jobkit._store.sqlite import WriterTurns


def test_a_writer_that_waits_past_the_timeout_fails_like_a_locked_database() -> None:
    """Another thread holding the turn past the timeout: a transient 'database is locked' error."""
    turns = WriterTurns(timeout=0.1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with turns:
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked") as caught, turns:
            pass
        assert 0.1 <= time.monotonic() - started < 2
        assert is_transient(caught.value)  # so the store retries it, as it would SQLite's own error
    finally:
        release.set()
        holder.join()
    with turns:  # free again once the holder is done
        pass


def test_the_same_thread_may_nest_turns() -> None:
    """A helper that writes inside another write of the same thread does not deadlock."""
    turns = WriterTurns(timeout=0.1)
    with turns, turns:
        pass

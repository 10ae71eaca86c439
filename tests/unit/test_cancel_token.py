"""CancelToken: first reason wins, callbacks fire once, raise_if_cancelled raises, wait wakes on cancel."""

from __future__ import annotations

import threading
import time

import pytest

from jobkit import CancelToken, JobCancelledError
from jobkit._vocabulary import CancelReason


def test_first_reason_wins() -> None:
    """A token fired twice keeps the first reason."""
    token = CancelToken()
    assert token.cancel("timeout") is True
    assert token.cancel("shutdown") is False
    assert (token.cancelled, token.reason) == (True, "timeout")


def test_raise_if_cancelled() -> None:
    """raise_if_cancelled raises only after the token fired, carrying the reason."""
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel("pause")
    with pytest.raises(JobCancelledError) as raised:
        token.raise_if_cancelled()
    assert raised.value.reason == "pause"


def test_on_cancel_runs_callbacks_once() -> None:
    """Callbacks run when the token fires, or at once if it already has."""
    token = CancelToken()
    seen: list[str] = []
    token.on_cancel(seen.append)
    token.cancel("cancel")
    token.cancel("again")
    token.on_cancel(seen.append)
    assert seen == ["cancel", "cancel"]


def test_wait_is_woken_by_a_cancel_from_another_thread() -> None:
    """A waiting job wakes as soon as another thread fires its token; a timeout alone returns False."""
    token = CancelToken()
    assert token.wait(0.01) is False
    timer = threading.Timer(0.05, token.cancel, args=("timeout",))
    timer.start()
    started = time.monotonic()
    assert token.wait(5) is True
    assert time.monotonic() - started < 2
    assert token.reason == "timeout"
    timer.join()


def test_wait_on_a_fired_token_returns_at_once() -> None:
    """Waiting after the token fired does not block, even with no timeout."""
    token = CancelToken()
    token.cancel("pause")
    assert token.wait() is True


def test_an_unknown_reason_is_refused_and_does_not_fire_the_token() -> None:
    """A reason that names no CancelReason is a ValueError naming the valid ones; the token stays unfired."""
    token = CancelToken()
    with pytest.raises(ValueError, match=r"unknown cancel reason 'cancle'.*cancel, pause"):
        token.cancel("cancle")
    assert not token.cancelled and token.reason is None
    assert token.cancel("pause") is True
    assert token.reason is CancelReason.PAUSE and token.reason == "pause"

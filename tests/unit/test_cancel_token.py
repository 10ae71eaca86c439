"""CancelToken: first reason wins, callbacks fire once, raise_if_cancelled raises."""

from __future__ import annotations

import pytest

from jobkit import CancelToken, JobCancelledError


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

"""Backoff policies, all computed through tenacity's wait strategies."""

from __future__ import annotations

from jobkit._backoff import EXPONENTIAL_CAP, EXPONENTIAL_JITTER, delay_for, make_wait


def test_exponential_doubles_with_bounded_jitter() -> None:
    """Exponential: 1, 2, 4, 8 … seconds plus at most the jitter."""
    wait = make_wait("exponential")
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (10, 512)]:
        delay = delay_for(wait, attempt)
        assert base <= delay <= base + EXPONENTIAL_JITTER


def test_exponential_is_capped() -> None:
    """A very late attempt never waits longer than the cap plus jitter."""
    assert delay_for(make_wait("exponential"), 60) <= EXPONENTIAL_CAP + EXPONENTIAL_JITTER


def test_linear_and_fixed() -> None:
    """Linear grows by a step per attempt; fixed stays put."""
    assert [delay_for(make_wait("linear"), a) for a in (1, 2, 3)] == [5, 10, 15]
    assert [delay_for(make_wait("fixed"), a) for a in (1, 2, 3)] == [5, 5, 5]

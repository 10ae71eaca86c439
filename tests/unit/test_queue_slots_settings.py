"""Queues with slots of their own, as configure(), JOBKIT_QUEUES and the worker's --queue give them."""

from __future__ import annotations

import pytest

from jobkit import ConfigurationError
from jobkit._runtime.ledger import Ledger
from jobkit._settings import load_settings


def test_slots_make_the_concurrency_their_sum() -> None:
    """default=10,mailers=2 is 12 jobs at once, each queue with its own slots."""
    settings = load_settings(queues="default=10,mailers=2")
    assert (settings.concurrency, settings.queue_slots) == (12, {"default": 10, "mailers": 2})
    assert tuple(settings.queues or ()) == ("default", "mailers")
    assert load_settings(queues={"a": 3}).queue_slots == {"a": 3}
    assert load_settings(queues=["default=1", "mailers=2"]).concurrency == 3  # repeated --queue


def test_names_alone_keep_the_shared_form() -> None:
    """Queue names without slots share the worker's concurrency, as before."""
    settings = load_settings(queues="default,mailers", concurrency=4)
    assert (settings.queues, settings.queue_slots, settings.concurrency) == (("default", "mailers"), None, 4)


def test_the_environment_variable_takes_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBKIT_QUEUES=default=10,mailers=2 gives the same slots as configure()."""
    monkeypatch.setenv("JOBKIT_QUEUES", "default=10,mailers=2")
    assert load_settings().queue_slots == {"default": 10, "mailers": 2}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"queues": "a=1,b"}, "give every queue its slots"),
        ({"queues": "a=x"}, "slots must be a whole number"),
        ({"queues": "a=0"}, "at least 1 slot"),
        ({"queues": "a=1", "concurrency": 4}, "concurrency 4 does not match the 1 slots"),
    ],
)
def test_bad_slots_are_refused(given: dict[str, object], message: str) -> None:
    """Mixed forms, non-numbers, zero slots and a contradicting concurrency are refused."""
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**given)


def test_a_ledger_with_queue_slots_gives_each_queue_its_own_room() -> None:
    """room_in counts only the queue's own held jobs; prefetch is off with queue slots."""
    ledger = Ledger(3, queue_slots={"slow": 1, "fast": 2})
    assert (ledger.room_in("slow"), ledger.room_in("fast"), ledger.room_in("other"), ledger.prefetch) == (
        1,
        2,
        0,
        False,
    )

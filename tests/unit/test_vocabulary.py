"""The shared vocabulary: members are the stored strings, parsing refuses unknown words, events read as mappings."""

from __future__ import annotations

import json

import pytest

from jobkit._vocabulary import TERMINAL_STATES, CancelReason, Event, EventType, JobState, Request


def test_states_are_the_stored_strings() -> None:
    """A state equals, hashes and serialises as its text, so rows and JSON read as before."""
    assert JobState.PENDING == "pending" and {"pending": 1}[JobState.PENDING] == 1
    assert json.dumps([JobState.FAILED]) == '["failed"]'
    assert {str(state) for state in TERMINAL_STATES} == {"completed", "failed", "cancelled"}


def test_terminal_is_completed_failed_and_cancelled_only() -> None:
    """Exactly the three ending states are terminal, whether asked of a member or of stored text."""
    assert [state for state in JobState if state.terminal] == [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED]
    assert "cancelled" in TERMINAL_STATES and "paused" not in TERMINAL_STATES


def test_a_damaged_stored_state_parses_to_none() -> None:
    """JobState.parse names the state of a stored value, and None for text that names none."""
    assert JobState.parse("running") is JobState.RUNNING
    assert JobState.parse("runnning") is None and JobState.parse(None) is None


def test_an_unknown_cancel_reason_is_a_clear_error() -> None:
    """CancelReason.parse lists the known reasons when given any other text."""
    assert CancelReason.parse("lease_lost") is CancelReason.LEASE_LOST
    with pytest.raises(ValueError, match=r"unknown cancel reason 'stop'; expected one of: cancel, pause"):
        CancelReason.parse("stop")


def test_requests_rank_pause_cancel_discard_kill() -> None:
    """A stronger request outranks a weaker one; only pause leaves the job to go on later."""
    assert sorted(Request, key=lambda r: r.rank) == [Request.PAUSE, Request.CANCEL, Request.DISCARD, Request.KILL]
    assert [r for r in Request if not r.ends_job] == [Request.PAUSE]


def test_an_event_reads_as_the_mapping_listeners_had() -> None:
    """type and job_id first, then the details, by key or as a dict; equal to the dict it replaces."""
    event = Event.of("started", 7, name="emails.send", attempt=1)
    assert event.type is EventType.STARTED and event.name == "emails.send"
    assert list(event) == ["type", "job_id", "name", "attempt"] and len(event) == 4
    assert event["job_id"] == 7 and event.get("queue") is None
    assert event == {"type": "started", "job_id": 7, "name": "emails.send", "attempt": 1}
    assert event != {"type": "started", "job_id": 7}
    assert json.dumps(dict(event)) == '{"type": "started", "job_id": 7, "name": "emails.send", "attempt": 1}'


def test_an_event_refuses_an_unknown_type_or_a_detail_that_redefines_its_keys() -> None:
    """Event.of checks the type against EventType and keeps type and job_id its own."""
    with pytest.raises(ValueError):
        Event.of("exploded", 1)
    with pytest.raises(ValueError, match="cannot redefine"):
        Event.of(EventType.FAILED, 1, job_id=2)

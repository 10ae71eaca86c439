"""The policy: what every outcome and crash becomes, for a job with retries left and without."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from jobkit._registry import build_options
from jobkit._runtime import policy
from jobkit._runtime.outcome import Cancelled, Completed, Crashed, Failed, Snoozed
from jobkit._store import ClaimedJob
from jobkit._vocabulary import CancelReason, EventType, TransitionKind
from jobkit.errors import Discard

NOW = 1_000_000.0
ERROR = {"type": "RuntimeError", "message": "boom", "attempt": 1}


def claimed(attempt: int = 1, max_retries: int = 3, crashes: int = 0, errors: str | None = None) -> ClaimedJob:
    """A job held by worker w-1 under lease 7."""
    return ClaimedJob(
        id=42,
        name="tests.policy",
        queue="default",
        priority=0,
        args="{}",
        attempt=attempt,
        max_retries=max_retries,
        errors=errors,
        checkpoint=None,
        crashes=crashes,
        lease=7,
        run_at=NOW,
        created_at=NOW,
        worker_id="w-1",
    )


def backoff(attempt: int) -> float:
    return 10.0 * attempt


def decide(job: ClaimedJob, outcome: Any, **kwargs: Any) -> policy.Decision:
    kwargs.setdefault("backoff", backoff)
    kwargs.setdefault("max_crashes", 3)
    return policy.decide(job, outcome, NOW, **kwargs)


def kinds(decision: policy.Decision) -> list[str]:
    return [t.kind for t in decision.writes]


WITH_RETRIES = claimed(attempt=1, max_retries=3)
LAST_ATTEMPT = claimed(attempt=4, max_retries=3)

#: (outcome, transition kinds and event with retries left, the same on the last attempt)
TABLE = [
    (Completed('"ok"', "ok"), (["complete"], "completed"), (["complete"], "completed")),
    (Failed(ERROR, retryable=True), (["retry"], "retrying"), (["fail"], "failed")),
    (Failed(ERROR, retryable=False), (["fail"], "failed"), (["fail"], "failed")),
    (Snoozed(30.0), (["snooze"], "snoozed"), (["snooze"], "snoozed")),
    (Cancelled(CancelReason.CANCEL), (["cancel"], "cancelled"), (["cancel"], "cancelled")),
    (Cancelled(CancelReason.KILL), (["cancel"], "cancelled"), (["cancel"], "cancelled")),
    (Cancelled(CancelReason.PAUSE), (["pause"], "paused"), (["pause"], "paused")),
    (Cancelled(CancelReason.DISCARD), (["fail"], "failed"), (["fail"], "failed")),
    (Cancelled(CancelReason.SHUTDOWN), (["release"], "released"), (["release"], "released")),
    (Cancelled(CancelReason.REQUEUE), (["release"], "released"), (["release"], "released")),
    (Cancelled(CancelReason.LEASE_LOST), (["release"], "released"), (["release"], "released")),
    (Crashed(ERROR), (["rescue"], "rescued"), (["rescue_fail"], "failed")),
    (Crashed(ERROR, attempt_spent=False), (["release_crash"], "rescued"), (["release_crash"], "rescued")),
]


IDS = [repr(row[0])[:40] for row in TABLE]


@pytest.mark.parametrize(("outcome", "left"), [(o, left) for o, left, _ in TABLE], ids=IDS)
def test_each_outcome_with_retries_left(outcome: Any, left: tuple[list[str], str]) -> None:
    """With retries left, every outcome maps to its one transition and event."""
    decision = decide(WITH_RETRIES, outcome)
    assert (kinds(decision), decision.event) == left


@pytest.mark.parametrize(("outcome", "last"), [(o, last) for o, _, last in TABLE], ids=IDS)
def test_each_outcome_on_the_last_attempt(outcome: Any, last: tuple[list[str], str]) -> None:
    """On the last attempt a retryable failure fails and a crash that spends the attempt fails too."""
    decision = decide(LAST_ATTEMPT, outcome)
    assert (kinds(decision), decision.event) == last


def test_every_write_is_fenced_by_the_jobs_lease() -> None:
    """Each transition names the job, its worker and its lease."""
    [write] = decide(WITH_RETRIES, Failed(ERROR, retryable=True)).writes
    assert (write.job_id, write.worker, write.lease) == (42, "w-1", 7)


def test_a_retry_waits_for_the_backoff_of_the_failed_attempt() -> None:
    """The retry's delay is the backoff of the attempt that failed, and the decision says so."""
    decision = decide(claimed(attempt=2), Failed(ERROR, retryable=True))
    assert decision.writes[0].values["delay"] == 20.0
    assert decision.delay == 20.0


def test_the_backoff_is_asked_once() -> None:
    """A jittered backoff is called once, so the delay logged is the delay written."""
    calls: list[int] = []

    def counting(attempt: int) -> float:
        calls.append(attempt)
        return 1.5

    decide(WITH_RETRIES, Failed(ERROR, retryable=True), backoff=counting)
    assert calls == [1]


def test_a_failure_is_appended_to_the_error_history() -> None:
    """The failure's entry goes after the entries already stored."""
    job = claimed(errors=json.dumps([{"type": "Old"}]))
    [write] = decide(job, Failed(ERROR, retryable=False)).writes
    assert [e["type"] for e in json.loads(write.values["errors"])] == ["Old", "RuntimeError"]


def test_a_damaged_error_history_is_kept_as_text() -> None:
    """A history that is not JSON is kept, raw, ahead of the new entry; never an exception."""
    [write] = decide(claimed(errors="{not json"), Failed(ERROR, retryable=False)).writes
    history = json.loads(write.values["errors"])
    assert history[0]["type"] == "DamagedHistory" and history[0]["raw"] == "{not json"
    assert history[1]["type"] == "RuntimeError"


def test_pending_progress_is_written_first() -> None:
    """Progress not yet written goes ahead of the outcome's write, in the same batch."""
    decision = decide(WITH_RETRIES, Completed("1", 1), progress='{"percent": 50}')
    assert kinds(decision) == ["progress", "complete"]
    assert decision.writes[0].values == {"progress": '{"percent": 50}'}


def test_a_discard_request_fails_the_job_with_a_discard_entry() -> None:
    """An operator's discard while running ends the job failed, with a Discard error entry."""
    [write] = decide(WITH_RETRIES, Cancelled(CancelReason.DISCARD)).writes
    [entry] = json.loads(write.values["errors"])
    assert (entry["type"], entry["at"]) == ("Discard", NOW)


def test_a_pause_request_keeps_the_attempt() -> None:
    """A pause writes the pause transition with nothing else to carry."""
    [write] = decide(WITH_RETRIES, Cancelled(CancelReason.PAUSE)).writes
    assert (write.kind, write.values) == (TransitionKind.PAUSE, {})


def test_a_release_goes_back_at_once() -> None:
    """A shutdown, hand-back or lost lease releases the job with no delay."""
    decision = decide(WITH_RETRIES, Cancelled(CancelReason.SHUTDOWN))
    assert (decision.writes[0].values, decision.delay) == ({"delay": 0.0}, 0.0)


@pytest.mark.parametrize(("crashes", "kind"), [(0, "rescue"), (1, "rescue"), (2, "rescue_fail")])
def test_crashes_are_counted_up_to_max_crashes(crashes: int, kind: str) -> None:
    """The crash that reaches max_crashes fails the job even with retries left (a poison pill)."""
    decision = decide(claimed(crashes=crashes), Crashed(ERROR))
    assert kinds(decision) == [kind]


def test_a_shutdown_overrun_fails_only_at_max_crashes() -> None:
    """A crash that gives the attempt back still counts, and fails the job at max_crashes."""
    assert kinds(decide(LAST_ATTEMPT, Crashed(ERROR, attempt_spent=False))) == ["release_crash"]
    assert kinds(decide(claimed(crashes=2), Crashed(ERROR, attempt_spent=False))) == ["rescue_fail"]


@pytest.mark.parametrize(
    ("attempt", "crashes", "expected"),
    [
        (1, 0, policy.Lost(TransitionKind.RESCUE, 1)),
        (4, 0, policy.Lost(TransitionKind.RESCUE_FAIL, 1)),
        (1, 2, policy.Lost(TransitionKind.RESCUE_FAIL, 3, poisoned=True)),
        (4, 2, policy.Lost(TransitionKind.RESCUE_FAIL, 3, poisoned=True)),
    ],
)
def test_a_lost_worker_s_job_is_judged_as_a_crash(attempt: int, crashes: int, expected: policy.Lost) -> None:
    """for_lost: back to pending, or failed when out of attempts or a poison pill (as the store's rescue)."""
    assert policy.for_lost(attempt, 3, crashes, max_crashes=3) == expected


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1.0, policy.MAX_DELAY * 2])
def test_an_insane_backoff_fails_the_job_naming_the_delay(delay: float) -> None:
    """A backoff answering NaN, infinity, a negative or centuries fails the job instead of parking it."""
    decision = decide(WITH_RETRIES, Failed(ERROR, retryable=True), backoff=lambda attempt: delay)
    assert (kinds(decision), decision.event, decision.delay) == (["fail"], "failed", None)
    assert isinstance(decision.outcome, Failed) and not decision.outcome.retryable
    assert f"the backoff gave a delay of {delay!r} seconds" in decision.outcome.error["message"]


def test_a_backoff_that_raises_fails_the_job_with_the_reason() -> None:
    """A backoff that raises is named with its exception in the job's failure."""

    def broken(attempt: int) -> float:
        raise ZeroDivisionError("no")

    decision = decide(WITH_RETRIES, Failed(ERROR, retryable=True), backoff=broken)
    assert "the backoff (it raised ZeroDivisionError: no)" in decision.outcome.error["message"]  # type: ignore[union-attr]


def test_an_insane_snooze_fails_the_job() -> None:
    """A snooze of NaN seconds (built past Snooze's own check) fails rather than break the write."""
    decision = decide(WITH_RETRIES, Snoozed(math.nan))
    assert (kinds(decision), decision.event) == (["fail"], "failed")
    assert "Snooze gave a delay of nan seconds" in decision.outcome.error["message"]  # type: ignore[union-attr]


def test_the_backoff_is_not_asked_without_retries_left() -> None:
    """On the last attempt the backoff is never called (it may be expensive or broken)."""

    def unreachable(attempt: int) -> float:
        raise AssertionError("called")

    assert kinds(decide(LAST_ATTEMPT, Failed(ERROR, retryable=True), backoff=unreachable)) == ["fail"]


def test_only_a_completion_without_progress_is_plain() -> None:
    """The completer's one-statement shortcut applies to completions with nothing else to write."""
    assert policy.plain_completion(Completed("1", 1), None)
    assert not policy.plain_completion(Completed("1", 1), "{}")
    assert not policy.plain_completion(Failed(ERROR, retryable=True), None)


@pytest.mark.parametrize(
    ("decided", "final", "told"),
    [
        (EventType.RETRYING, "cancelled", EventType.CANCELLED),
        (EventType.SNOOZED, "failed", EventType.FAILED),
        (EventType.RELEASED, "paused", EventType.PAUSED),
        (EventType.RETRYING, "pending", None),
        (EventType.CANCELLED, "cancelled", None),
        (EventType.COMPLETED, None, None),
    ],
)
def test_an_operator_request_that_won_the_write_is_what_is_told(
    decided: EventType, final: str | None, told: EventType | None
) -> None:
    """A request that ended the job in the same statement decides the event; otherwise the decision stands."""
    answer = policy.requested(decided, final)
    assert (answer.event if answer else None) == told


def test_an_unknown_cancel_reason_is_a_clear_error() -> None:
    """A reason that names nothing known is refused, never read as a plain cancel."""
    with pytest.raises(ValueError, match="unknown cancel reason 'bogus'"):
        Cancelled("bogus")  # type: ignore[arg-type]


def test_retryable_honours_discard_and_the_exception_filters() -> None:
    """Discard and discard_on are permanent; with retry_on only the listed errors are retried."""
    plain = build_options("tests.plain")
    filtered = build_options("tests.filtered", retry_on=(TimeoutError,), discard_on=(KeyError,))
    assert policy.retryable(RuntimeError("x"), plain)
    assert not policy.retryable(Discard("x"), plain)
    assert policy.retryable(TimeoutError("x"), filtered)
    assert not policy.retryable(RuntimeError("x"), filtered)
    assert not policy.retryable(KeyError("x"), replace(filtered, retry_on=()))

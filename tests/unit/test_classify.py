"""Outcome classification: what the executor says happened when perform returned, raised or was left behind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from jobkit import CancelToken, Discard, FakeClock, JobCancelledError, Snooze
from jobkit._registry import JobType, handler_type
from jobkit._runtime.executor import Prepared, abandoned, classify, finish, run_sync
from jobkit._runtime.outcome import Cancelled, Completed, Failed, Snoozed
from jobkit._store import ClaimedJob
from jobkit._vocabulary import CancelReason
from jobkit.errors import JobError

NOW = 1_000_000.0


def claimed(name: str = "tests.classify") -> ClaimedJob:
    return ClaimedJob(
        id=1,
        name=name,
        queue="default",
        priority=0,
        args="{}",
        attempt=1,
        max_retries=3,
        errors=None,
        checkpoint=None,
        crashes=0,
        lease=1,
        run_at=NOW,
        created_at=NOW,
        worker_id="w-1",
    )


def prepared(call: Any = None, token: CancelToken | None = None, **options: Any) -> Prepared:
    job_type: JobType = handler_type("tests.classify", lambda args: None, **options)
    return Prepared(claimed(), job_type, token or CancelToken(), call or (lambda: None))


def fired(reason: str) -> CancelToken:
    token = CancelToken()
    token.cancel(reason)
    return token


def test_an_ordinary_error_is_a_retryable_failure() -> None:
    """An exception from perform is a failure that may be retried, with its type and message."""
    outcome = classify(prepared(), RuntimeError("boom"), NOW)
    assert isinstance(outcome, Failed) and outcome.retryable
    assert (outcome.error["type"], outcome.error["message"], outcome.error["at"]) == ("RuntimeError", "boom", NOW)


def test_discard_is_a_permanent_failure() -> None:
    """Discard is never retried."""
    outcome = classify(prepared(), Discard("no"), NOW)
    assert isinstance(outcome, Failed) and not outcome.retryable


def test_discard_on_and_retry_on_decide_retryable() -> None:
    """discard_on makes an error permanent; retry_on retries only the errors it lists."""
    assert not classify(prepared(discard_on=(KeyError,)), KeyError("k"), NOW).retryable  # type: ignore[union-attr]
    only_timeouts = prepared(retry_on=(TimeoutError,))
    assert classify(only_timeouts, TimeoutError(), NOW).retryable  # type: ignore[union-attr]
    assert not classify(only_timeouts, ValueError(), NOW).retryable  # type: ignore[union-attr]


def test_snooze_is_a_snooze_even_when_the_token_fired() -> None:
    """Snooze names its delay and wins over a fired token."""
    assert classify(prepared(token=fired("cancel")), Snooze(12), NOW) == Snoozed(12)


@pytest.mark.parametrize("reason", ["cancel", "pause", "shutdown", "lease_lost", "kill"])
def test_an_error_after_the_token_fired_is_a_cancel_for_its_reason(reason: str) -> None:
    """Whatever the job raised once its token fired, the token's reason is the outcome."""
    assert classify(prepared(token=fired(reason)), RuntimeError("late"), NOW) == Cancelled(CancelReason(reason))


def test_a_timeout_is_a_retryable_job_timeout() -> None:
    """A job that raised after its timeout fired failed with JobTimeout, retryable."""
    outcome = classify(prepared(token=fired("timeout"), timeout=2), RuntimeError("x"), NOW)
    assert isinstance(outcome, Failed) and outcome.retryable
    assert outcome.error["type"] == "JobTimeout" and "timeout of 2.0s" in outcome.error["message"]


@pytest.mark.parametrize("exc", [JobCancelledError("cancel"), asyncio.CancelledError()])
def test_a_cancellation_error_without_a_fired_token_is_a_cancel(exc: BaseException) -> None:
    """JobCancelledError or a cancelled task is a plain cancel."""
    assert classify(prepared(), exc, NOW) == Cancelled(CancelReason.CANCEL)


def test_a_return_value_completes_with_its_json() -> None:
    """perform's value is stored as JSON and carried as the object itself."""
    outcome = finish(prepared(), {"a": 1}, NOW)
    assert isinstance(outcome, Completed) and (json.loads(outcome.result), outcome.value) == ({"a": 1}, {"a": 1})


def test_a_return_after_the_token_fired_is_a_cancel() -> None:
    """A job that returned after a cancel is cancelled, not completed."""
    assert finish(prepared(token=fired("pause")), "done", NOW) == Cancelled(CancelReason.PAUSE)


def test_a_result_that_is_not_json_fails_for_good() -> None:
    """A value that cannot be stored fails without retry: running again would only produce it again."""
    outcome = finish(prepared(), object(), NOW)
    assert isinstance(outcome, Failed) and not outcome.retryable
    assert "result cannot be stored as JSON" in outcome.error["message"]


def test_system_exit_from_a_job_is_only_a_failure() -> None:
    """A job calling sys.exit() fails; it cannot take its executor thread down."""

    def leave() -> None:
        raise SystemExit(3)

    outcome = run_sync(prepared(call=leave), FakeClock(NOW))
    assert isinstance(outcome, Failed) and outcome.error["type"] == "SystemExit"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("timeout", "JobTimeout"), ("discard", "Discard"), ("kill", None), ("cancel", None)],
)
def test_a_job_left_behind_past_kill_grace(reason: str, expected: str | None) -> None:
    """Abandoned: a timeout fails retryable, a discard fails for good, anything else is cancelled."""
    job_type = handler_type("tests.classify", lambda args: None, timeout=1)
    outcome = abandoned(claimed(), job_type, reason, 5.0, NOW)
    if expected is None:
        assert outcome == Cancelled(CancelReason(reason))
        return
    assert isinstance(outcome, Failed) and outcome.error["type"] == expected
    assert outcome.retryable is (reason == "timeout")


def test_an_error_whose_str_raises_still_classifies() -> None:
    """The job's exception may be hostile: its entry is built without calling into it unguarded."""

    class Hostile(JobError):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    outcome = classify(prepared(), Hostile(), NOW)
    assert isinstance(outcome, Failed) and "str() of the Hostile failed" in outcome.error["message"]

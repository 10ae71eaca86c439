"""The process pool's wire format: JSON messages, outcomes there and back, nothing pickled."""

from __future__ import annotations

import pytest

from jobkit._runtime import wire
from jobkit._runtime.outcome import Cancelled, Completed, Crashed, Failed, Outcome, Snoozed
from jobkit._vocabulary import CancelReason
from jobkit.cli.overview import pool_rows

ERROR = {"attempt": 1, "type": "ValueError", "message": "bad", "traceback": "Traceback ...", "at": 1.5}


@pytest.mark.parametrize(
    "outcome",
    [
        Completed('{"a": [1, 2]}', {"a": [1, 2]}),
        Failed(ERROR, retryable=False),
        Cancelled(CancelReason.PAUSE),
        Snoozed(2.5),
        Crashed(ERROR, attempt_spent=False),
    ],
    ids=lambda o: type(o).__name__,
)
def test_an_outcome_survives_the_pipe(outcome: Outcome) -> None:
    """Every outcome kind goes through JSON text and comes back equal."""
    data = wire.decode(wire.encode({"op": "done", "outcome": wire.dump_outcome(outcome)}))
    assert wire.load_outcome(data["outcome"]) == outcome


def test_anything_but_a_json_object_is_refused() -> None:
    """A message is a JSON object; a list, bad text or an unknown outcome kind is a ValueError."""
    with pytest.raises(ValueError):
        wire.decode(b"[1, 2]")
    with pytest.raises(ValueError):
        wire.decode(b"\x80not json")
    with pytest.raises(ValueError):
        wire.load_outcome({"kind": "pickled"})


def test_nan_never_crosses_the_pipe() -> None:
    """Strict JSON, as everywhere in jobkit: a NaN is refused when the message is written."""
    with pytest.raises(ValueError):
        wire.encode({"op": "done", "outcome": wire.dump_outcome(Snoozed(float("nan")))})


def test_the_children_table_reads_a_pool_report_and_ignores_a_damaged_one() -> None:
    """One row per child (idle or its job); a threads worker without children, or unreadable JSON, gets none."""
    report = '{"pool": "processes", "children": [{"pid": 7, "job": 3, "tasks": 2, "rss": 3145728}]}'
    [row] = pool_rows("w1", report)
    assert [str(c) for c in row] == ["w1", "processes", "7", "3", "2", "3"]
    assert pool_rows("w1", '{"pool": "threads", "children": []}') == []
    assert [str(c) for c in pool_rows("w1", '{"pool": "processes", "children": []}')[0]][:2] == ["w1", "processes"]
    assert pool_rows("w1", "{not json") == []
    assert pool_rows("w1", '{"pool": "processes", "children": [{"job": 1}]}') == []
    assert pool_rows("w1", None) == []

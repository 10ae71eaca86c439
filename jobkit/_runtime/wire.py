"""The process pool's wire format: JSON messages over a pipe, outcomes as plain JSON objects.

Nothing is pickled between a worker and its children: a message is a JSON object with an
``op`` (parent to child: ``run``, ``cancel``, ``stop``; child to parent: ``ready``,
``progress``, ``checkpoint``, ``log``, ``done``), so a child cannot make its parent execute code.
"""

from __future__ import annotations

import json
from typing import Any

from jobkit._runtime.outcome import Cancelled, Completed, Crashed, Failed, Outcome, Snoozed
from jobkit._vocabulary import CancelReason


def encode(message: dict[str, Any]) -> bytes:
    """One message as UTF-8 JSON text (NaN and infinities are refused, as everywhere in jobkit)."""
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> dict[str, Any]:
    """One message back; anything but a JSON object is a ValueError."""
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object on the pipe, got {type(message).__name__}")
    return message


def dump_outcome(outcome: Outcome) -> dict[str, Any]:
    """An outcome as a JSON object (a child never produces Crashed: its death is the parent's to name)."""
    match outcome:
        case Completed(result):
            return {"kind": "completed", "result": result}
        case Failed(error, retryable):
            return {"kind": "failed", "error": error, "retryable": retryable}
        case Cancelled(reason):
            return {"kind": "cancelled", "reason": str(reason)}
        case Snoozed(seconds):
            return {"kind": "snoozed", "seconds": seconds}
        case Crashed(error, attempt_spent):
            return {"kind": "crashed", "error": error, "attempt_spent": attempt_spent}


def load_outcome(data: dict[str, Any]) -> Outcome:
    """The outcome a child sent; an unknown kind is a ValueError."""
    kind = data.get("kind")
    if kind == "completed":
        result = str(data["result"])
        return Completed(result, json.loads(result))
    if kind == "failed":
        return Failed(dict(data["error"]), bool(data["retryable"]))
    if kind == "cancelled":
        return Cancelled(CancelReason.parse(str(data["reason"])))
    if kind == "snoozed":
        return Snoozed(float(data["seconds"]))
    if kind == "crashed":
        return Crashed(dict(data["error"]), bool(data.get("attempt_spent", True)))
    raise ValueError(f"unknown outcome kind {kind!r} from a child process")

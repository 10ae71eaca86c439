"""Schedules' options: a cron expression with its timezone, arguments and catch-up and overlap policies.

``@job(cron=...)`` and ``queue.schedule`` both build a :class:`Recurrence` here, so a bad
schedule is refused when it is declared, naming the job (docs/scheduling.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jobkit._cron import CronSpec, parse_cron
from jobkit._names import MAX_QUEUE, name_problem, short_repr
from jobkit._payload import BaseModel, to_json_args
from jobkit.errors import JobDefinitionError, PayloadError

#: What a schedule does with fire times missed while no scheduler ran, and with a run still going.
CATCHUP_POLICIES = ("skip", "latest", "all")
OVERLAP_POLICIES = ("allow", "skip", "cancel_previous")


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A validated schedule: when (``spec``), with which arguments, and its catch-up and overlap policies.

    ``catchup_window`` (seconds) is how late a fire may still be made; None means one period of
    the schedule for ``latest`` and ``all``, and the same bounded by a minute for ``skip``.
    """

    spec: CronSpec
    args: dict[str, Any]
    args_json: str
    catchup: str = "latest"
    catchup_window: float | None = None
    overlap: str = "allow"
    queue: str | None = None

    @property
    def cron(self) -> str:
        """The expression as declared."""
        return self.spec.expression

    @property
    def timezone(self) -> str:
        """The IANA timezone the expression is read in."""
        return self.spec.timezone


def build_recurrence(
    name: str,
    *,
    cron: Any,
    timezone: Any = "UTC",
    args: Any = None,
    catchup: Any = "latest",
    catchup_window: Any = None,
    overlap: Any = "allow",
    queue: Any = None,
    schema: type[BaseModel] | None = None,
) -> Recurrence:
    """Validate a schedule's options (the expression, timezone, arguments against ``schema``), naming ``name``."""
    try:
        spec = parse_cron(cron, timezone)
    except ValueError as exc:
        raise JobDefinitionError(f"{name}: {exc}") from None
    if args is None:
        args = {}
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        raise JobDefinitionError(f"{name}: cron_args must be a dict of arguments, got {short_repr(args)}")
    try:
        args_json = to_json_args(schema, args)
    except (PayloadError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise JobDefinitionError(f"{name}: cron_args are invalid: {exc}") from None
    if catchup not in CATCHUP_POLICIES:
        raise JobDefinitionError(f"{name}: catchup must be one of {CATCHUP_POLICIES}, got {short_repr(catchup)}")
    if overlap not in OVERLAP_POLICIES:
        raise JobDefinitionError(f"{name}: overlap must be one of {OVERLAP_POLICIES}, got {short_repr(overlap)}")
    if isinstance(catchup_window, timedelta):
        catchup_window = catchup_window.total_seconds()
    if catchup_window is not None and (
        isinstance(catchup_window, bool) or not isinstance(catchup_window, int | float) or catchup_window <= 0
    ):
        raise JobDefinitionError(
            f"{name}: catchup_window must be a positive number of seconds or a timedelta, got {catchup_window!r}"
        )
    if queue is not None and (problem := name_problem("queue", queue, MAX_QUEUE)) is not None:
        raise JobDefinitionError(f"{name}: {problem}")
    window = None if catchup_window is None else float(catchup_window)
    return Recurrence(spec, dict(args), args_json, catchup, window, overlap, queue)

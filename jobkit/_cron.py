"""Cron expressions: parsing (APScheduler 3's CronTrigger) and jobkit's fire times, DST included.

This is the one module that turns a cron expression into instants. It sits beside ``_payload``
and ``_backoff`` (a wrapper of one library, under the job API) rather than in ``_runtime``, so
``@job(cron=...)`` refuses a bad expression or timezone when the class is defined, as every
other option is refused (see the comment in pyproject.toml's layering contract).

APScheduler walks the expression over *wall-clock* times (the trigger runs in UTC, so it never
applies an offset itself); jobkit then maps each wall time to instants in the schedule's zone:

- an expression with a fixed hour (no ``*`` and no step in the hour field) fires once at an
  ambiguous wall time (its first occurrence, before the clocks fall back), and a wall time that
  a spring-forward gap skips fires once right after the gap (Vixie cron's rule: ``30 2 * * *``
  in Europe/Berlin fires at 03:00 local on 2026-03-29);
- as in Vixie cron, when both day of month and day of week are restricted (neither starts with
  ``*``), a day matching either one fires;
- an expression with ``*`` or a stepped hour follows wall-clock instants: an ambiguous wall
  time fires at both of its instants, and a skipped one does not fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

#: The shorthands users expect from cron (``@midnight`` and ``@annually`` as Vixie cron spells them).
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: Cron numbers weekdays from Sunday (0, and 7 again); APScheduler 3 numbers them from Monday,
#: so the weekday field is rewritten with names, which mean the same to both.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: How far around an instant to look for the zone's offsets (no DST shift is longer than this).
_NEAR = 3 * 3600.0


@dataclass(frozen=True)
class CronSpec:
    """A parsed expression in a timezone: ask it for fire times.

    Example::

        spec = parse_cron("30 2 * * *", "Europe/Berlin")
        spec.fire_times(after=t0, until=t1)   # epoch seconds in (t0, t1]
    """

    expression: str
    timezone: str
    #: Whether the hour field names fixed hours (see the module docstring for what that changes).
    fixed_hour: bool
    #: One trigger, or two when day of month and day of week are both restricted (cron fires
    #: when either matches; one APScheduler trigger would need both).
    _triggers: tuple[Any, ...]
    _zone: ZoneInfo

    def fire_times(self, *, after: float, until: float, limit: int | None = None) -> list[float]:
        """Every fire time in ``(after, until]``, as epoch seconds, in order (the first ``limit`` of them)."""
        if until <= after:
            return []
        low = after + min(self._offsets(after))
        high = until + max(self._offsets(until))
        times: set[float] = set()
        for trigger in self._triggers:
            found: set[float] = set()
            wall = _naive(low - 1.0)
            while True:
                wall = trigger.get_next_fire_time(wall, wall)
                if wall is None or wall.timestamp() > high:
                    break
                found.update(t for t in self._instants(wall.replace(tzinfo=None)) if after < t <= until)
                # A little past the limit: near a fall-back hour, wall order and instant order differ.
                if limit is not None and len(found) > limit + 2:
                    break
            times |= found
        return sorted(times)[:limit]

    def next_fire(self, after: float) -> float | None:
        """The first fire time after ``after`` (None: the expression never fires in the next five years)."""
        found = [t for t in (self._next_of(trigger, after) for trigger in self._triggers) if t is not None]
        return min(found, default=None)

    def _next_of(self, trigger: Any, after: float) -> float | None:
        horizon = after + 5 * 366 * 86400.0
        wall = _naive(after + min(self._offsets(after)) - 1.0)
        best: float | None = None
        stop = horizon
        # Wall times one by one (the trigger jumps straight to each match): the first instant after
        # ``after`` is known once the wall clock has passed it by the zone's largest offset there.
        while True:
            wall = trigger.get_next_fire_time(wall, wall)
            if wall is None or wall.timestamp() > stop:
                return best
            for instant in self._instants(wall.replace(tzinfo=None)):
                if instant > after and (best is None or instant < best):
                    best = instant
                    stop = instant + max(self._offsets(instant))

    def _offsets(self, at: float) -> list[float]:
        return [self._offset(at + delta) for delta in (-_NEAR, 0.0, _NEAR)]

    def _offset(self, at: float) -> float:
        offset = datetime.fromtimestamp(at, self._zone).utcoffset()
        return 0.0 if offset is None else offset.total_seconds()

    def _instants(self, wall: datetime) -> list[float]:
        """The instants a wall time (naive, in this zone) fires at, by the DST rules above."""
        first = wall.replace(tzinfo=self._zone, fold=0)
        second = wall.replace(tzinfo=self._zone, fold=1)
        exists = first.astimezone(UTC).astimezone(self._zone).replace(tzinfo=None) == wall
        if not exists:  # in a spring-forward gap
            return [self._gap_end(second.timestamp(), first.timestamp())] if self.fixed_hour else []
        if first.utcoffset() != second.utcoffset():  # ambiguous: the clocks fell back over it
            return [first.timestamp()] if self.fixed_hour else [first.timestamp(), second.timestamp()]
        return [first.timestamp()]

    def _gap_end(self, before: float, after: float) -> float:
        """The instant the clocks jumped forward, between two instants on either side of it."""
        old = self._offset(before)
        while after - before > 0.5:
            middle = (before + after) / 2
            if self._offset(middle) == old:
                before = middle
            else:
                after = middle
        return float(round(after))


def parse_cron(expression: str, timezone: str = "UTC") -> CronSpec:
    """Parse a cron expression in an IANA timezone; raises ValueError saying what is wrong.

    Five fields (minute hour day month weekday), or six with seconds first, or an alias
    (``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``).
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"cron must be a non-empty string, got {expression!r}")
    if not isinstance(timezone, str) or not timezone.strip():
        raise ValueError(f"cron_timezone must be an IANA timezone name, got {timezone!r}")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"cron_timezone {timezone!r} is not a known IANA timezone") from None
    text = ALIASES.get(expression.strip().lower(), expression.strip())
    if text.startswith("@"):
        raise ValueError(f"cron {expression!r}: unknown alias (known: {', '.join(sorted(ALIASES))})")
    fields = text.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    if len(fields) != 6:
        raise ValueError(
            f"cron {expression!r} has {len(fields)} fields; expected 5 (minute hour day month weekday) "
            "or 6 (second first)"
        )
    second, minute, hour, day, month, weekday = fields
    days = [(day, weekday)]
    if not day.startswith(("*", "?")) and not weekday.startswith(("*", "?")):
        # Vixie cron: with both restricted, a day matching either one fires.
        days = [(day, "*"), ("*", weekday)]
    try:
        triggers = tuple(
            CronTrigger(
                second=second,
                minute=minute,
                hour=hour,
                day=on_day,
                month=month,
                day_of_week=_weekdays(on_weekday),
                timezone=UTC,
            )
            for on_day, on_weekday in days
        )
    except ValueError as exc:
        raise ValueError(f"cron {expression!r}: {exc}") from None
    spec = CronSpec(expression, timezone, "*" not in hour and "/" not in hour, triggers, zone)
    if spec.next_fire(datetime.now(UTC).timestamp()) is None:
        raise ValueError(f"cron {expression!r} never fires")
    return spec


def _weekdays(field: str) -> str:
    """A cron weekday field (0 or 7 = Sunday) as APScheduler weekday names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        base, _, step_text = item.partition("/")
        step = _number(step_text, item) if step_text else 1
        if step < 1:
            raise ValueError(f"weekday step must be at least 1 in {item!r}")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            start, _, end = base.partition("-")
            first, last = _day(start, item), _day(end, item)
            if end.strip() == "sun":
                last = 7  # "fri-sun" reads as Friday to Sunday
        else:
            first = _day(base, item)
            last = first if not step_text else 6
        if first > last:
            raise ValueError(f"weekday range {item!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _day(text: str, item: str) -> int:
    text = text.strip()
    if text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    day = _number(text, item)
    if not 0 <= day <= 7:
        raise ValueError(f"weekday {text!r} in {item!r} is not 0-7 or a day name")
    return day


def _number(text: str, item: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{text!r} in weekday field {item!r} is not a number or a day name")
    return int(text)


def _naive(epoch: float) -> datetime:
    """Epoch seconds as a UTC datetime; the trigger treats it as a wall time (see the module docstring)."""
    return datetime.fromtimestamp(epoch, UTC)


def period(spec: CronSpec, fire_at: float) -> float:
    """Seconds from ``fire_at`` to the fire after it (one period of the schedule there)."""
    following = spec.next_fire(fire_at)
    return timedelta(days=366).total_seconds() if following is None else following - fire_at

"""Cron expressions and schedule options are checked when declared, naming the job."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel

from jobkit import BaseJob, JobDefinitionError, job
from jobkit._cron import parse_cron
from jobkit._registry import lookup, unregister


class Args(BaseModel):
    scope: str


def define(name: str, **options: object) -> type[BaseJob[Args]]:
    @job(name=name, schema=Args, **options)  # type: ignore[arg-type]
    class Defined(BaseJob[Args]):
        def perform(self, args: Args) -> str:
            return args.scope

    return Defined


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "unit.cron: cron '61 \\* \\* \\* \\*': .*higher than the maximum value \\(59\\)"),
        ({"cron": "* * *"}, "unit.cron: cron '\\* \\* \\*' has 3 fields; expected 5"),
        ({"cron": "@sometimes"}, "unit.cron: cron '@sometimes': unknown alias"),
        ({"cron": "0 0 30 2 *"}, "unit.cron: cron '0 0 30 2 \\*' never fires"),
        ({"cron": "0 0 * * 9"}, "unit.cron: cron '0 0 \\* \\* 9': weekday '9'"),
        (
            {"cron": "0 2 * * *", "cron_timezone": "Europe/Atlantis"},
            "unit.cron: cron_timezone 'Europe/Atlantis' is not",
        ),
        ({"cron": "0 2 * * *", "cron_args": {"scope": 5}}, "unit.cron: cron_args are invalid"),
        ({"cron": "0 2 * * *", "cron_args": {"scope": "a", "extra": 1}}, "unit.cron: cron_args are invalid"),
        ({"cron": "0 2 * * *", "cron_args": None}, "unit.cron: cron_args are invalid"),  # the schema requires scope
        ({"cron": "0 2 * * *", "catchup": "some"}, "unit.cron: catchup must be one of"),
        ({"cron": "0 2 * * *", "overlap": "never"}, "unit.cron: overlap must be one of"),
        ({"cron": "0 2 * * *", "catchup_window": -1}, "unit.cron: catchup_window must be a positive number"),
        ({"cron_timezone": "Europe/Berlin"}, "unit.cron: cron_timezone only apply to a job declared with cron="),
        ({"overlap": "skip"}, "unit.cron: overlap only apply"),
    ],
)
def test_an_invalid_schedule_is_refused_naming_the_job(options: dict[str, object], message: str) -> None:
    """Each invalid cron option raises JobDefinitionError at class definition, naming the job."""
    if "cron" in options:
        options.setdefault("cron_args", {"scope": "x"})  # valid arguments, so the option under test is the fault
    with pytest.raises(JobDefinitionError, match=message):
        define("unit.cron", **options)
    assert lookup("unit.cron") is None


def test_a_valid_schedule_is_kept_on_the_job_type() -> None:
    """A valid declaration keeps its parsed expression, timezone and policies."""
    try:
        cls = define(
            "unit.cron_ok", cron="0 2 * * *", cron_timezone="Europe/Berlin", cron_args={"scope": "all"}, overlap="skip"
        )
        recurrence = cls.job_type().options.recurrence
        assert recurrence is not None
        assert (recurrence.cron, recurrence.timezone, recurrence.overlap, recurrence.catchup) == (
            "0 2 * * *",
            "Europe/Berlin",
            "skip",
            "latest",
        )
        assert recurrence.args_json == '{"scope":"all"}'
    finally:
        unregister("unit.cron_ok")


def times(expression: str, zone: str, start: datetime, end: datetime) -> list[str]:
    tz = ZoneInfo(zone)
    found = parse_cron(expression, zone).fire_times(after=start.timestamp(), until=end.timestamp())
    return [datetime.fromtimestamp(t, tz).strftime("%a %d %H:%M:%S") for t in found]


DEC = datetime(2026, 12, 6, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_aliases_fire_as_their_expressions(alias: str, expected: str) -> None:
    """Each alias fires exactly when the expression it stands for fires."""
    end = datetime(2028, 1, 2, tzinfo=UTC)
    assert times(alias, "UTC", DEC, end) == times(expected, "UTC", DEC, end)


def test_weekdays_count_from_sunday_as_cron_does() -> None:
    """0 and 7 are Sunday, 1-5 Monday to Friday (APScheduler alone would count from Monday)."""
    week = datetime(2026, 12, 13, 1, tzinfo=UTC)
    assert [t[:3] for t in times("0 0 * * 0", "UTC", DEC, week)] == ["Sun"]
    assert [t[:3] for t in times("0 0 * * 7", "UTC", DEC, week)] == ["Sun"]
    assert [t[:3] for t in times("0 0 * * 1-5", "UTC", DEC, week)] == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert [t[:3] for t in times("0 0 * * fri-sun", "UTC", DEC, week)] == ["Fri", "Sat", "Sun"]


def test_a_sixth_field_is_seconds() -> None:
    """Six fields: the first one is seconds."""
    end = datetime(2026, 12, 6, 0, 1, tzinfo=UTC)
    assert times("*/20 * * * * *", "UTC", DEC, end) == ["Sun 06 00:00:20", "Sun 06 00:00:40", "Sun 06 00:01:00"]


@pytest.mark.parametrize("expression", ["*/7 * * * *", "15 9-17 * * *", "0 0 1,15 * *", "30 4 * 6 *", "*/45 * * * * *"])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_away_from_dst_fire_times_are_apschedulers(expression: str, zone: str) -> None:
    """On days without a clock change, jobkit's fire times are exactly APScheduler's CronTrigger's."""
    fields = expression.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    second, minute, hour, day, month, _ = fields
    trigger = CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, timezone=ZoneInfo(zone))
    start = datetime(2026, 6, 1, tzinfo=UTC)
    end = datetime(2026, 6, 3, tzinfo=UTC) if "*" in minute or second != "0" else datetime(2026, 7, 20, tzinfo=UTC)
    theirs: list[float] = []
    previous = None
    moment = start
    while True:
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None or fire > end:
            break
        if fire > start:
            theirs.append(fire.timestamp())
        previous = moment = fire
    ours = parse_cron(expression, zone).fire_times(after=start.timestamp(), until=end.timestamp())
    assert ours == theirs and ours


def test_day_of_month_or_day_of_week_as_cron_does() -> None:
    """With both restricted, a day matching either fires (Vixie cron); a ``*``-led field restricts nothing."""
    december = datetime(2026, 12, 1, tzinfo=UTC)
    new_year = datetime(2027, 1, 1, 1, tzinfo=UTC)
    either = times("0 0 13 * 5", "UTC", december, new_year)
    assert [t[:6] for t in either] == ["Fri 04", "Fri 11", "Sun 13", "Fri 18", "Fri 25", "Fri 01"]
    assert [t[:6] for t in times("0 0 */10 * 5", "UTC", december, new_year)] == ["Fri 11", "Fri 01"]

"""Job types of the cron tests; importable by the ticker subprocesses (tests/cron_ticker.py)."""

from __future__ import annotations

from pydantic import BaseModel

from jobkit import BaseJob, job


class ReportArgs(BaseModel):
    scope: str = "all"


@job(name="tests.cron.report", schema=ReportArgs, max_retries=0)
class Report(BaseJob[ReportArgs]):
    """A job that schedules point at; returns its scope."""

    def perform(self, args: ReportArgs) -> str:
        return args.scope


@job(
    name="tests.cron.nightly",
    schema=ReportArgs,
    max_retries=0,
    cron="0 2 * * *",
    cron_timezone="Europe/Berlin",
    cron_args={"scope": "nightly"},
)
class Nightly(BaseJob[ReportArgs]):
    """Declared with cron=: every scheduler upserts it under its name."""

    def perform(self, args: ReportArgs) -> str:
        return args.scope

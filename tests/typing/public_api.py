"""Snippets of the public API, checked by mypy --strict in tests/typing/test_typing.py (never executed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

import jobkit
from jobkit import BaseJob, JobFailed, JobHandle, JobInfo, JobQueue, job


class EmailArgs(BaseModel):
    to: str
    subject: str


@job(name="typing.send_email", schema=EmailArgs, max_retries=3, backoff="exponential", timeout=30, queue="mailers")
class SendEmail(BaseJob[EmailArgs]):
    def perform(self, args: EmailArgs) -> dict[str, bool]:
        self.progress(10, stage="render")
        self.cancel_token.raise_if_cancelled()
        attempt: int = self.attempt
        assert attempt >= 1
        return {"sent": True}


def enqueue_everything(queue: JobQueue) -> list[JobHandle]:
    a: JobHandle = SendEmail.perform_later(to="a@b.c", subject="hi")
    b = SendEmail.perform_at(datetime.now(UTC), to="a@b.c", subject="hi")
    c = SendEmail.perform_in(timedelta(minutes=5), to="a@b.c", subject="hi")
    d = SendEmail.set(queue="urgent", priority=-5).perform_later(to="a@b.c", subject="hi")
    many: list[JobHandle] = SendEmail.perform_all_later([{"to": "a@b.c", "subject": "hi"}])
    return [a, b, c, d, *many]


def inspect(handle: JobHandle) -> str:
    info: JobInfo = handle.refresh()
    try:
        handle.result(timeout=1.0)
    except JobFailed as failure:
        return failure.error_type
    return info.status


queue: JobQueue = jobkit.configure(concurrency=2)
stats: dict[str, object] = queue.stats()


@job(
    name="typing.nightly",
    schema=EmailArgs,
    cron="0 2 * * *",
    cron_timezone="Europe/Berlin",
    cron_args={"to": "ops@b.c", "subject": "nightly"},
    catchup="latest",
    catchup_window=timedelta(hours=1),
    overlap="skip",
)
class Nightly(BaseJob[EmailArgs]):
    def perform(self, args: EmailArgs) -> None:
        pass


def schedule_things(queue: JobQueue) -> list[dict[str, object]]:
    queue.schedule(Nightly, cron="*/15 * * * *", args={"to": "a@b.c", "subject": "s"}, key="report-15m")
    fired = queue.scheduler.run_once()
    handle: JobHandle = queue.run_schedule("report-15m")
    assert queue.pause_schedule("report-15m") and queue.resume_schedule("report-15m") and handle.id
    assert queue.unschedule("report-15m") or fired
    return list(queue.schedules())

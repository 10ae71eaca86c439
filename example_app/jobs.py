"""The newsletter's jobs: a welcome email, a scheduled follow-up, a multi-stage weekly report and a nightly digest."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from pydantic import BaseModel, Field

from example_app.db import engine, outbox, subscribers
from jobkit import BaseJob, Discard, job


class EmailArgs(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    name: str


class ReportArgs(BaseModel):
    week: str


def send(to: str, subject: str, body: str) -> None:
    """'Send' an email by writing it to the outbox table (a real app would call its mail provider)."""
    with engine().begin() as conn:
        conn.execute(outbox.insert().values(to=to, subject=subject, body=body))


@job(
    name="newsletter.send_welcome", schema=EmailArgs, max_retries=5, backoff="exponential", timeout=30, queue="mailers"
)
class SendWelcomeEmail(BaseJob[EmailArgs]):
    """Greets a new subscriber, then schedules a follow-up for three days later."""

    def perform(self, args: EmailArgs) -> dict[str, str]:
        with engine().connect() as conn:
            still_subscribed = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email == args.to)).first()
        if still_subscribed is None:
            raise Discard(f"{args.to} unsubscribed before the welcome email went out")
        send(args.to, "Welcome!", f"Hi {args.name}, thanks for subscribing.")
        SendFollowUp.perform_in(timedelta(days=3), to=args.to, name=args.name)
        return {"sent_to": str(args.to)}


@job(name="newsletter.follow_up", schema=EmailArgs, max_retries=3, queue="mailers")
class SendFollowUp(BaseJob[EmailArgs]):
    """Asks a subscriber, a few days in, how they like the newsletter."""

    def perform(self, args: EmailArgs) -> None:
        send(args.to, "How are we doing?", f"Hi {args.name}, reply and tell us what you think.")


@job(name="newsletter.weekly_report", schema=ReportArgs, max_retries=2, backoff="linear", timeout=600, queue="reports")
class BuildWeeklyReport(BaseJob[ReportArgs]):
    """Collects subscribers, renders the report and publishes it, in three checkpointed stages."""

    def perform(self, args: ReportArgs) -> dict[str, object]:
        done = self.last_checkpoint.stage if self.last_checkpoint else None

        if done is None:
            self.progress(10, stage="collect", message="counting subscribers")
            with engine().connect() as conn:
                emails = [row.email for row in conn.execute(sa.select(subscribers.c.email).order_by(subscribers.c.id))]
            self.checkpoint("collect", {"emails": emails})
        else:
            emails = self.last_checkpoint.data["emails"] if self.last_checkpoint else []
        self.cancel_token.raise_if_cancelled()

        self.progress(50, stage="render", message=f"rendering for {len(emails)} subscribers")
        body = f"Week {args.week}: {len(emails)} subscribers.\n" + "\n".join(f"- {e}" for e in emails)
        self.checkpoint("render", {"emails": emails, "body": body})
        self.cancel_token.raise_if_cancelled()

        self.progress(90, stage="publish", message="sending to the editors")
        send("editors@example.com", f"Weekly report {args.week}", body)
        self.progress(100, stage="publish", message="done")
        return {"week": args.week, "subscribers": len(emails)}


class DigestArgs(BaseModel):
    audience: str = "editors@example.com"


@job(
    name="newsletter.nightly_digest",
    schema=DigestArgs,
    max_retries=2,
    queue="reports",
    cron="0 2 * * *",
    cron_timezone="Europe/Berlin",
    cron_args={"audience": "editors@example.com"},
    catchup="latest",
    overlap="skip",
)
class NightlyDigest(BaseJob[DigestArgs]):
    """Every night at 02:00 Berlin time, tells the editors how many subscribers there are.

    Every worker's scheduler may fire it; the database makes sure it runs once a night. After a
    night with no worker up, the latest missed digest runs (``catchup="latest"``), and a digest
    still running the next night is not started twice (``overlap="skip"``).
    """

    def perform(self, args: DigestArgs) -> dict[str, int]:
        with engine().connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar_one()
        send(args.audience, "Nightly digest", f"{count} subscribers tonight.")
        return {"subscribers": int(count)}

"""The newsletter's application code: what a web request handler would call."""

from __future__ import annotations

from example_app.db import engine, subscribers
from example_app.jobs import SendWelcomeEmail
from jobkit import JobHandle


def sign_up(email: str, name: str) -> JobHandle:
    """Store the subscriber and enqueue the welcome email in ONE transaction.

    If the insert fails (a duplicate email, say) the job is never enqueued; if the
    enqueue fails the subscriber is not stored. No half-done sign-ups.
    """
    with engine().begin() as conn:
        conn.execute(subscribers.insert().values(email=email, name=name))
        return SendWelcomeEmail.perform_later(to=email, name=name, connection=conn)

"""Per-account CRM syncs: one at a time per subscriber (a concurrency key) and at most 20 a second to the CRM.

Kept in a module of its own so the newsletter's other jobs stay as they are; the demo runs it last.
"""

from __future__ import annotations

import threading
import time

from pydantic import BaseModel

import jobkit
from jobkit import BaseJob, job

# The CRM's API allows 20 calls a second for the whole app: every worker shares this window.
jobkit.limits.define("newsletter.crm", "20/s")

_lock = threading.Lock()
_running: dict[str, int] = {}
#: The most syncs of one subscriber seen running at once in this process (the demo prints it).
peak: dict[str, int] = {}


class SyncArgs(BaseModel):
    email: str
    opens: int = 0


@job(
    name="newsletter.sync_to_crm",
    schema=SyncArgs,
    max_retries=3,
    concurrency_key=lambda args: f"subscriber:{args.email}",
    concurrency_limit=1,
    rate_limit="newsletter.crm",
)
class SyncToCrm(BaseJob[SyncArgs]):
    """Pushes a subscriber's open count to the CRM; two syncs of one subscriber never overlap."""

    def perform(self, args: SyncArgs) -> dict[str, object]:
        key = args.email
        with _lock:
            _running[key] = _running.get(key, 0) + 1
            peak[key] = max(peak.get(key, 0), _running[key])
        try:
            time.sleep(0.05)  # the CRM call
        finally:
            with _lock:
                _running[key] -= 1
        return {"email": args.email, "opens": args.opens}


def sync_all(emails: list[str], rounds: int = 3, timeout: float = 30) -> dict[str, int]:
    """Enqueue ``rounds`` syncs per subscriber at once and wait for them; returns the peak per subscriber."""
    handles = [SyncToCrm.perform_later(email=email, opens=n) for n in range(rounds) for email in emails]
    for handle in handles:
        handle.result(timeout=timeout)
    return dict(peak)

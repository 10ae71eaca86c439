"""Stand-ins for the runtime's unit tests: a hand-moved monotonic clock and held jobs that never touch a database."""

from __future__ import annotations

from jobkit import CancelToken, FakeClock
from jobkit._runtime.ledger import HeldJob
from jobkit._runtime.reporter import JobReporter
from jobkit._store import ClaimedJob


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NoWrites:
    """Report writes that always take, without a store."""

    def progress(self, job: ClaimedJob, payload: str, now: float) -> bool:
        return True

    def checkpoint(self, job: ClaimedJob, payload: str, now: float) -> bool:
        return True


class NoFlush:
    """A progress flusher that never schedules anything."""

    def schedule(self, due: float, reporter: JobReporter) -> None:
        pass


def held(job_id: int, name: str = "tests.held") -> HeldJob:
    """A claimed job as the ledger holds it, with its own token and reporter."""
    job = ClaimedJob(job_id, name, "default", 0, "{}", 1, 0, None, None, 0, 1, 0.0, 0.0, worker_id="w-1")
    token = CancelToken()
    return HeldJob(job, None, token, JobReporter(job, token, FakeClock(), lambda event: None, NoWrites(), NoFlush()))

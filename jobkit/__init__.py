"""jobkit: declarative background jobs on SQLite and PostgreSQL.

Example::

    from jobkit import BaseJob, job

    @job(name="emails.send", schema=EmailArgs, max_retries=3)
    class SendEmail(BaseJob[EmailArgs]):
        def perform(self, args: EmailArgs) -> dict[str, bool]:
            return {"sent": True}

    SendEmail.perform_later(to="a@b.c", subject="hi")
"""

from jobkit import limits
from jobkit._cancel import CancelToken
from jobkit._clock import FakeClock, SystemClock
from jobkit._enqueue import ConfiguredJob
from jobkit._handle import JobEvent, JobHandle, JobInfo
from jobkit._job import BaseJob, Checkpoint, JobContext, job
from jobkit._queue import JobQueue, configure
from jobkit._runtime.direct import DirectHandle
from jobkit._settings import Settings
from jobkit._vocabulary import CancelReason, Event, EventType, JobState
from jobkit.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    Discard,
    EnqueueError,
    JobCancelled,
    JobCancelledError,
    JobDefinitionError,
    JobError,
    JobFailed,
    JobNotFound,
    JobTimeout,
    PayloadError,
    ResultTimeout,
    SchemaMissing,
    Snooze,
    WorkerLost,
)

__version__ = "0.1.0"

__all__ = [
    "BaseJob",
    "CancelReason",
    "CancelToken",
    "Checkpoint",
    "ConfigurationError",
    "ConfiguredJob",
    "DatabaseUnavailable",
    "DirectHandle",
    "Discard",
    "EnqueueError",
    "Event",
    "EventType",
    "FakeClock",
    "JobCancelled",
    "JobCancelledError",
    "JobContext",
    "JobDefinitionError",
    "JobError",
    "JobEvent",
    "JobFailed",
    "JobHandle",
    "JobInfo",
    "JobNotFound",
    "JobQueue",
    "JobState",
    "JobTimeout",
    "PayloadError",
    "ResultTimeout",
    "SchemaMissing",
    "Settings",
    "Snooze",
    "SystemClock",
    "WorkerLost",
    "__version__",
    "configure",
    "job",
    "limits",
]

"""The public exception tree.

Everything jobkit raises on purpose derives from :class:`JobError`, so an
application can catch the whole family with one ``except``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

#: The longest delay jobkit stores (about 100 years): ``perform_in``, ``set(wait=...)`` and ``Snooze``.
MAX_DELAY_SECONDS = 100 * 365.25 * 86400.0


class JobError(Exception):
    """Base class of every exception jobkit raises on purpose."""


class JobDefinitionError(JobError):
    """A ``@job`` declaration is invalid; raised when the class is defined.

    Example::

        @job(name="emails.send", max_retries=-1)   # JobDefinitionError at import time
        class SendEmail(BaseJob[EmailArgs]): ...
    """


class ConfigurationError(JobError):
    """Settings given to :func:`jobkit.configure` or ``JOBKIT_*`` are invalid."""


class EnqueueError(JobError):
    """A job could not be enqueued (bad options such as a naive datetime, or arguments that are not JSON).

    Nothing is stored when it is raised. Example::

        SendEmail.set(queue="").perform_later(...)   # EnqueueError: queue must be a non-empty string ...
    """


class PayloadError(JobError, ValueError):
    """A value is not strict JSON, or stored text cannot be read back; the message names the path.

    Arguments, results, progress and checkpoints are stored as strict JSON: no NaN or Infinity,
    string keys only, no lone surrogates, only JSON types (a datetime, set or bytes is refused
    rather than silently converted), within the ``max_payload_depth`` and ``max_payload_bytes``
    settings. ``path`` holds the keys and indexes leading to the bad value, ``reason`` what is wrong.
    Enqueueing turns it into an :class:`EnqueueError` naming the job and the argument.

    Example::

        try:
            SendEmail.perform_later(to="a@b.c", scores=[1.0, float("nan")])
        except EnqueueError as exc:
            print(exc)   # send_email: argument scores[1]: nan is not allowed in JSON
    """

    def __init__(self, reason: str, path: tuple[str | int, ...] = ()) -> None:
        self.reason = reason
        self.path = path
        where = self.where()
        super().__init__(f"{where}: {reason}" if where else reason)

    def where(self, root: str = "") -> str:
        """The path as text, e.g. ``items[3].price``; ``root`` is put in front (``result.total``)."""
        text = root
        # A path into a too-deep value is as long as the value is deep: its start locates it.
        parts = self.path if len(self.path) <= 8 else self.path[:6]
        for part in parts:
            if isinstance(part, int):
                text += f"[{part}]"
            elif part.isidentifier():
                text += f".{part}" if text else part
            else:
                text += f"[{part!r}]"
        return text if len(parts) == len(self.path) else text + "..."


class JobNotFound(JobError):
    """No job with this id exists (it may have been pruned or deleted)."""


class Discard(JobError):
    """Raise inside ``perform`` to fail the job now, without any retry.

    Example::

        if not user.exists:
            raise Discard("user was deleted")
    """


class Snooze(JobError):
    """Raise inside ``perform`` to run the job again later without spending an attempt.

    Example::

        if rate_limited:
            raise Snooze(30)   # try again in 30 seconds
    """

    def __init__(self, seconds: float | timedelta) -> None:
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError(f"Snooze takes seconds (a number or a timedelta), got {seconds!r}")
        # A delay the database cannot store as a time (NaN, infinity, centuries) would be written
        # and then break every reader of the row: refused here, in the job that raised it.
        try:
            value = float(seconds)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not (math.isfinite(value) and 0 <= value <= MAX_DELAY_SECONDS):
            raise ValueError(
                f"Snooze seconds must be a finite number from 0 to {MAX_DELAY_SECONDS:.0f} (about 100 years), "
                f"got {seconds!r}"
            )
        super().__init__(f"snoozed for {seconds}s")
        self.seconds = value


class JobTimeout(JobError):
    """Recorded as the error of an attempt that exceeded its job's ``timeout``."""


class WorkerLost(JobError):
    """Recorded as the error of an attempt whose worker stopped heartbeating."""


class JobCancelledError(JobError):
    """Raised by ``CancelToken.raise_if_cancelled()`` inside a running job."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(f"job cancelled ({reason or 'no reason given'})")
        self.reason = reason


class JobFailed(JobError):
    """Raised by ``JobHandle.result()`` when the job ended ``failed``.

    ``errors`` is the job's full error history, newest last; each entry holds
    ``type``, ``message``, ``traceback``, ``attempt`` and ``at``.
    """

    def __init__(self, job_id: int, errors: list[dict[str, Any]]) -> None:
        last = errors[-1] if errors else {"type": "unknown", "message": "no error recorded"}
        super().__init__(f"job {job_id} failed: {last.get('type')}: {last.get('message')}")
        self.job_id = job_id
        self.errors = errors

    @property
    def error_type(self) -> str:
        """The exception type name of the last recorded error."""
        return str(self.errors[-1].get("type")) if self.errors else "unknown"


class JobCancelled(JobError):
    """Raised by ``JobHandle.result()`` when the job ended ``cancelled``."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class ResultTimeout(JobError, TimeoutError):
    """``JobHandle.result(timeout=...)`` gave up before the job ended."""


class DatabaseUnavailable(JobError):
    """The database could not be reached when jobkit started (refused, timed out, or missing).

    ``url`` is the database URL with its password hidden; ``reason`` is the driver's reason in one
    line. ``jobkit worker`` and every other command that needs the database exit with status 3.

    Example::

        jobkit.errors.DatabaseUnavailable: cannot reach the database at
        postgresql+psycopg://jobs:***@db/app: Connection refused
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the database at {url}: {reason}")
        self.url = url
        self.reason = reason


class SchemaMissing(JobError):
    """The database has no jobkit tables, or older ones, and auto-migration is off.

    Run ``jobkit db upgrade`` (or turn ``auto_migrate`` on). ``url`` has its password hidden.
    ``jobkit worker`` exits with status 2, also when the tables disappear under a running worker.

    Example::

        the database at sqlite:///jobs.sqlite3 has no jobkit tables: run `jobkit db upgrade`
    """

    def __init__(self, url: str, detail: str = "has no jobkit tables") -> None:
        super().__init__(f"the database at {url} {detail}: run `jobkit db upgrade`")
        self.url = url
        self.detail = detail

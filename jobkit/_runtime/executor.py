"""Run one claimed job and turn whatever happened into an Outcome; never raises.

:func:`prepare` binds a claimed row to its job type (a row that does not fit is a failure),
:func:`run_sync` / :func:`run_async` run it, :func:`classify` names what an exception means and
:func:`abandoned` what a job left behind past kill_grace ends as. Whether a failure is retried is
the policy's (:mod:`jobkit._runtime.policy`); this module only reports what happened.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from jobkit._cancel import CancelToken
from jobkit._clock import Clock
from jobkit._job import BaseJob, Checkpoint, JobContext, Reporter
from jobkit._payload import ValidationError, dumps, loads, validate
from jobkit._registry import JobType
from jobkit._runtime import policy
from jobkit._runtime.outcome import Cancelled, Completed, Failed, Outcome, Snoozed, error_entry
from jobkit._store import ClaimedJob
from jobkit._vocabulary import CancelReason
from jobkit.errors import Discard, JobCancelledError, JobTimeout, Snooze

log = logging.getLogger("jobkit.executor")


class Prepared:
    """A claimed job with its arguments parsed and its callable bound, ready to run."""

    __slots__ = ("call", "job", "job_type", "token")

    def __init__(self, job: ClaimedJob, job_type: JobType, token: CancelToken, call: Callable[[], Any]) -> None:
        self.job = job
        self.job_type = job_type
        self.token = token
        self.call = call


def prepare(
    job: ClaimedJob, job_type: JobType, token: CancelToken, reporter: Reporter, clock: Clock
) -> Prepared | Failed:
    """Parse and validate the stored arguments and bind perform; a bad row is a permanent failure."""
    try:
        raw = loads(job.args)
        if not isinstance(raw, dict):
            raise TypeError(f"stored arguments are {type(raw).__name__}, expected a JSON object")
        args = validate(job_type.options.schema, raw)
        checkpoint = _checkpoint(job.checkpoint)
    except (ValueError, TypeError, ValidationError) as exc:
        message = f"{job_type.name}: stored arguments no longer fit the job: {_first_line(exc)}"
        return Failed(error_entry(exc, job.attempt, clock.now(), message=message), retryable=False)
    except Exception as exc:
        # Anything else a damaged row can make the parser or validator throw (RecursionError on
        # deep nesting, MemoryError-free oddities of user validators): the row is bad, not the worker.
        message = f"{job_type.name}: stored arguments cannot be read: {type(exc).__name__}: {_first_line(exc)}"
        return Failed(error_entry(exc, job.attempt, clock.now(), message=message), retryable=False)
    target = job_type.target
    if job_type.is_class:
        try:
            instance: BaseJob[Any] = target(
                job_id=job.id, attempt=job.attempt, cancel_token=token, last_checkpoint=checkpoint, reporter=reporter
            )
        except Exception as exc:
            message = f"{job_type.name}: the job class could not be instantiated: {_first_line(exc)}"
            return Failed(error_entry(exc, job.attempt, clock.now(), message=message), retryable=True)
        return Prepared(job, job_type, token, lambda: instance.perform(args))
    process = getattr(target, "process", target)
    if not job_type.takes_context:
        return Prepared(job, job_type, token, lambda: process(args))
    context = JobContext(
        job_type.name,
        job_id=job.id,
        attempt=job.attempt,
        cancel_token=token,
        last_checkpoint=checkpoint,
        reporter=reporter,
    )
    return Prepared(job, job_type, token, lambda: process(args, context))


def _checkpoint(text: str | None) -> Checkpoint | None:
    value = loads(text)
    if not isinstance(value, dict) or "stage" not in value:
        return None
    return Checkpoint(str(value["stage"]), value.get("data"))


def classify(prepared: Prepared, exc: BaseException, now: float) -> Outcome:
    """Turn an exception from perform into an Outcome, honouring the token, Snooze, Discard and the filters."""
    job, options, token = prepared.job, prepared.job_type.options, prepared.token
    if isinstance(exc, Snooze):
        return Snoozed(exc.seconds)
    if token.cancelled:
        if token.reason == CancelReason.TIMEOUT:
            timeout_error = JobTimeout(f"{options.name}: exceeded its timeout of {options.timeout}s")
            timeout_error.__cause__ = exc
            return Failed(error_entry(timeout_error, job.attempt, now), retryable=True)
        return Cancelled(CancelReason.parse(token.reason or CancelReason.CANCEL))
    if isinstance(exc, JobCancelledError | asyncio.CancelledError):
        return Cancelled(CancelReason.CANCEL)
    _on_error(prepared, exc)
    return Failed(error_entry(exc, job.attempt, now), retryable=policy.retryable(exc, options))


def abandoned(job: ClaimedJob, job_type: JobType | None, reason: str | None, kill_grace: float, now: float) -> Outcome:
    """The outcome of a job that ignored its token (fired for ``reason``) past kill_grace and was left behind."""
    if reason == CancelReason.TIMEOUT:
        timeout = job_type.options.timeout if job_type else None
        error = JobTimeout(
            f"{job.name}: exceeded its timeout of {timeout}s and did not stop within kill_grace "
            f"({kill_grace}s); its thread was abandoned"
        )
        return Failed(error_entry(error, job.attempt, now), retryable=True)
    if reason == CancelReason.DISCARD:
        return Failed(error_entry(Discard("discarded by an operator while running"), job.attempt, now), False)
    return Cancelled(CancelReason.parse(reason or CancelReason.CANCEL))


def _on_error(prepared: Prepared, exc: BaseException) -> None:
    hook = getattr(prepared.job_type.target, "on_error", None) if not prepared.job_type.is_class else None
    if hook is None:
        return
    try:
        hook(exc, loads(prepared.job.args))
    except Exception:
        log.exception("%s: on_error hook raised", prepared.job_type.name)


def finish(prepared: Prepared, value: Any, now: float, dump: Callable[[Any], str] = dumps) -> Outcome:
    """perform returned ``value``: completed, unless the token fired (its reason decides)."""
    token = prepared.token
    if token.cancelled:
        if token.reason == CancelReason.TIMEOUT:
            return classify(prepared, JobTimeout("timed out"), now)
        return Cancelled(CancelReason.parse(token.reason or CancelReason.CANCEL))
    try:
        return Completed(dump(value), value)
    except Exception as exc:
        # Not JSON, too deep (RecursionError), too big, or a __json__ hook that raised: the result
        # cannot be stored, and running the job again would only produce it again.
        message = f"{prepared.job_type.name}: result cannot be stored as JSON: {_first_line(exc)}"
        return Failed(error_entry(exc, prepared.job.attempt, now, message=message), retryable=False)


def run_sync(prepared: Prepared, clock: Clock, dump: Callable[[Any], str] = dumps) -> Outcome:
    """Run a sync (or, in test mode, an async) job in the calling thread; never raises.

    Whatever perform raises is an outcome, ``SystemExit`` and ``KeyboardInterrupt`` included:
    a job calling ``sys.exit()`` must not take its executor thread, and with it a slot, away.
    """
    try:
        value = prepared.call()
        if inspect.isawaitable(value):
            value = asyncio.run(_guarded(prepared, value))
    except BaseException as exc:
        return _classify_safely(prepared, exc, clock)
    return finish(prepared, value, clock.now(), dump)


async def run_async(prepared: Prepared, clock: Clock, dump: Callable[[Any], str] = dumps) -> Outcome:
    """Run an async job on the worker's event loop; the token cancels the task outright; never raises."""
    try:
        value = prepared.call()
        if inspect.isawaitable(value):
            value = await _guarded(prepared, value)
    except BaseException as exc:
        return _classify_safely(prepared, exc, clock)
    return finish(prepared, value, clock.now(), dump)


def _classify_safely(prepared: Prepared, exc: BaseException, clock: Clock) -> Outcome:
    try:
        return classify(prepared, exc, clock.now())
    except Exception as failure:
        # classify calls user code (on_error hooks, exception filters' __instancecheck__).
        log.exception("%s: could not classify the job's exception", prepared.job_type.name)
        return Failed(error_entry(failure, prepared.job.attempt, clock.now()), retryable=True)


class _Raised:
    """A BaseException that escaped the job's coroutine, carried out of the task as a value."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _contained(awaitable: Any) -> Any:
    # asyncio re-raises SystemExit and KeyboardInterrupt out of the event loop itself, which would
    # stop the worker's loop and every async job on it; inside this frame they are only values.
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        return _Raised(exc)


async def _guarded(prepared: Prepared, awaitable: Any) -> Any:
    # Named for its job, so that the loop watch can say which job blocks the loop.
    task = asyncio.get_running_loop().create_task(_contained(awaitable), name=f"jobkit-job-{prepared.job.id}")
    loop = asyncio.get_running_loop()

    def cancel_task(_reason: str) -> None:
        loop.call_soon_threadsafe(task.cancel)

    prepared.token.on_cancel(cancel_task)
    value = await task
    if isinstance(value, _Raised):
        raise value.exc
    return value


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's text, never raising (the text is the job's)."""
    try:
        text = str(exc)
    except Exception:
        return f"<str() of the {type(exc).__name__} failed>"
    return text.splitlines()[0] if text else type(exc).__name__

"""OpenTelemetry tracing and metrics for jobkit (extra ``jobkit[otel]``), per the messaging conventions.

- At enqueue, a PRODUCER span ``send {queue}`` whose W3C trace context is stored with the
  job (the ``trace_context`` column), so the enqueue and every attempt meet in one trace
  even when they run in different processes, hours apart.
- Per attempt, a CONSUMER span ``process {queue}`` linked to that producer span (a link,
  not a parent: the enqueuing request has usually ended long before).
- The semantic conventions' messaging metrics: ``messaging.client.sent.messages``,
  ``messaging.client.operation.duration`` (the enqueue), ``messaging.client.consumed.messages``
  and ``messaging.process.duration`` (each attempt).

Attributes: ``messaging.system`` = ``jobkit``, ``messaging.destination.name`` (the queue),
``messaging.operation.type`` / ``messaging.operation.name`` (``send``, ``process``),
``messaging.message.id`` (the job id), ``error.type`` on failures, and ``jobkit.job.name``,
``jobkit.job.attempt``, ``jobkit.job.outcome``.

Example::

    from jobkit.contrib.otel import instrument

    tracing = instrument(jobkit.JobQueue.instance())   # the global tracer and meter providers

The consumer span is recorded from the worker's events; it is not made the current span
inside ``perform``, so spans a job starts itself begin traces of their own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

import jobkit
from jobkit._vocabulary import ATTEMPT_ENDINGS, Event, EventType

if TYPE_CHECKING:
    from jobkit._queue import JobQueue

SYSTEM = "jobkit"
#: Outcomes that mark the attempt's span as an error.
ERRORS = frozenset({EventType.FAILED, EventType.RETRYING})
#: The conventions' advised buckets for messaging durations (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class _EnqueueSpan:
    """One traced enqueue (an :class:`jobkit._events.EnqueueTrace`)."""

    def __init__(self, owner: JobkitTelemetry, span: Span, attributes: dict[str, Any], context: str | None) -> None:
        self.owner = owner
        self.span = span
        self.attributes = attributes
        self.context = context
        self.started = time.perf_counter()

    def end(self, job_ids: Sequence[int], error: BaseException | None) -> None:
        span = self.span
        attributes = dict(self.attributes)
        if len(job_ids) == 1:
            span.set_attribute("messaging.message.id", str(job_ids[0]))
        if error is not None:
            attributes["error.type"] = type(error).__qualname__
            span.set_attribute("error.type", attributes["error.type"])
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error).splitlines()[0] if str(error) else None))
        span.end()
        self.owner.sent.add(len(job_ids), attributes)
        self.owner.operation_duration.record(time.perf_counter() - self.started, attributes)


class JobkitTelemetry:
    """Traces and messaging metrics of one queue; ``close()`` stops them (open attempt spans are ended)."""

    def __init__(
        self,
        queue: JobQueue,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.queue = queue
        self.tracer = trace.get_tracer("jobkit", jobkit.__version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("jobkit", jobkit.__version__, meter_provider=meter_provider)
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Jobs enqueued."
        )
        self.operation_duration = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="Seconds an enqueue took to store its jobs.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}", description="Attempts started by this worker."
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Seconds an attempt ran.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        # Open attempt spans by (job id, attempt): started by one thread's event, ended by another's.
        self._spans: dict[tuple[int, int], tuple[Span, dict[str, Any], float]] = {}
        self._lock = threading.Lock()
        queue.enqueue_tracer = self
        self._untap: Callable[[], None] | None = queue.observe(self.observe)

    # -- producing ------------------------------------------------------------------------------

    def begin(self, name: str, queue: str, count: int) -> _EnqueueSpan:
        """Start the PRODUCER span of one enqueue; its context is what the jobs store."""
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        span_attributes = {**attributes, "jobkit.job.name": name}
        if count != 1:
            span_attributes["messaging.batch.message_count"] = count
        span = self.tracer.start_span(f"send {queue}", kind=SpanKind.PRODUCER, attributes=span_attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return _EnqueueSpan(self, span, attributes, json.dumps(carrier, sort_keys=True) if carrier else None)

    # -- consuming ------------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Open an attempt's CONSUMER span when it starts, end it with the outcome (the queue's observer)."""
        job = event.job
        if job is None:
            return
        kind = event.type
        if kind is EventType.STARTED:
            attributes: dict[str, Any] = {
                "messaging.system": SYSTEM,
                "messaging.destination.name": job.queue,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
            }
            span = self.tracer.start_span(
                f"process {job.queue}",
                kind=SpanKind.CONSUMER,
                links=_links(job.trace_context),
                attributes={
                    **attributes,
                    "messaging.message.id": str(job.id),
                    "jobkit.job.name": job.name,
                    "jobkit.job.attempt": job.attempt,
                },
            )
            with self._lock:
                self._spans[(job.id, job.attempt)] = (span, attributes, time.perf_counter())
            self.consumed.add(1, attributes)
        elif kind in ATTEMPT_ENDINGS:
            with self._lock:
                open_span = self._spans.pop((job.id, job.attempt), None)
            if open_span is None:
                return
            span, attributes, started = open_span
            span.set_attribute("jobkit.job.outcome", str(kind))
            if kind in ERRORS:
                error = event.get("error") or {}
                error_type = str(error.get("type") or "Exception")
                attributes = {**attributes, "error.type": error_type}
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, str(error.get("message") or "") or None))
            span.end()
            self.process_duration.record(
                event.ran if event.ran is not None else time.perf_counter() - started, attributes
            )

    def close(self) -> None:
        """Stop tracing this queue; attempt spans still open are ended as they stand."""
        if self._untap is not None:
            self._untap()
            self._untap = None
        if self.queue.enqueue_tracer is self:
            self.queue.enqueue_tracer = None
        with self._lock:
            spans, self._spans = list(self._spans.values()), {}
        for span, _attributes, _started in spans:
            span.end()


def _links(stored: str | None) -> list[Link]:
    """The link to the enqueue's span, from the trace context stored with the job (none if absent or damaged)."""
    if not stored:
        return []
    try:
        carrier = json.loads(stored)
    except ValueError:
        return []
    if not isinstance(carrier, dict):
        return []
    context = trace.get_current_span(propagate.extract({str(k): str(v) for k, v in carrier.items()})).get_span_context()
    return [Link(context)] if context.is_valid else []


def instrument(
    queue: JobQueue,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> JobkitTelemetry:
    """Trace ``queue``'s enqueues and attempts and record the messaging metrics (global providers by default)."""
    return JobkitTelemetry(queue, tracer_provider, meter_provider)


__all__ = ["JobkitTelemetry", "instrument"]

"""OpenTelemetry: a PRODUCER span per enqueue whose context travels with the job, a linked CONSUMER span per attempt."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from jobkit import JobQueue
from jobkit.contrib.otel import JobkitTelemetry, instrument
from tests.acceptance.test_cli_worker import ROOT, env_for
from tests.jobs import AddOne, Flaky


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    instrumented: JobkitTelemetry

    def finished(self, kind: SpanKind) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.kind is kind]

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        found: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry(queue: JobQueue) -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumented = instrument(queue, tracer_provider, meter_provider)
    yield Telemetry(exporter, reader, tracer_provider, instrumented)
    instrumented.close()
    meter_provider.shutdown()


def test_enqueue_and_attempt_spans_follow_the_messaging_conventions(queue: JobQueue, telemetry: Telemetry) -> None:
    """The producer span is a child of the caller's span; the consumer span links to it with the job's attributes."""
    tracer = telemetry.tracer_provider.get_tracer("tests")
    with tracer.start_as_current_span("POST /signup") as request:
        handle = AddOne.perform_later(n=1)
    queue.drain()
    assert handle.result(timeout=5) == 2
    [send] = telemetry.finished(SpanKind.PRODUCER)
    assert send.name == "send default"
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "jobkit",
        "messaging.destination.name": "default",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": str(handle.id),
        "jobkit.job.name": "tests.add_one",
    }
    [process] = telemetry.finished(SpanKind.CONSUMER)
    assert process.name == "process default"
    [link] = process.links
    assert (link.context.trace_id, link.context.span_id) == (send.context.trace_id, send.context.span_id)
    attributes = dict(process.attributes or {})
    assert attributes == {
        "messaging.system": "jobkit",
        "messaging.destination.name": "default",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": str(handle.id),
        "jobkit.job.name": "tests.add_one",
        "jobkit.job.attempt": 1,
        "jobkit.job.outcome": "completed",
    }
    assert process.status.status_code is StatusCode.UNSET


def test_each_attempt_has_its_own_span_and_failures_carry_error_type(queue: JobQueue, telemetry: Telemetry) -> None:
    """A retried job: two consumer spans, both linked to the one enqueue; the failed one has error.type."""
    handle = Flaky.perform_later(times=1)
    queue.drain()
    handle.result(timeout=5)
    [send] = telemetry.finished(SpanKind.PRODUCER)
    attempts = sorted(telemetry.finished(SpanKind.CONSUMER), key=lambda s: (s.attributes or {})["jobkit.job.attempt"])
    assert [(s.attributes or {})["jobkit.job.outcome"] for s in attempts] == ["retrying", "completed"]
    assert all(s.links[0].context.span_id == send.context.span_id for s in attempts)
    failed, done = attempts
    assert (failed.attributes or {})["error.type"] == "RuntimeError"
    assert failed.status.status_code is StatusCode.ERROR
    assert "error.type" not in (done.attributes or {})
    points = telemetry.metric_points()
    assert sum(p.value for p in points["messaging.client.sent.messages"]) == 1
    assert sum(p.value for p in points["messaging.client.consumed.messages"]) == 2
    durations = {p.attributes.get("error.type"): p.count for p in points["messaging.process.duration"]}
    assert durations == {"RuntimeError": 1, None: 1}
    assert sum(p.count for p in points["messaging.client.operation.duration"]) == 1


def test_a_bulk_enqueue_is_one_span_and_untraced_jobs_have_no_link(queue: JobQueue, telemetry: Telemetry) -> None:
    """perform_all_later is one send span with the batch count; a job enqueued before tracing links to nothing."""
    telemetry.instrumented.close()
    untraced = AddOne.perform_later(n=0)
    again = instrument(queue, telemetry.tracer_provider)
    try:
        handles = AddOne.perform_all_later([{"n": 1}, {"n": 2}, {"n": 3}])
        queue.drain()
        assert [h.result(timeout=5) for h in handles] == [2, 3, 4]
        [send] = telemetry.finished(SpanKind.PRODUCER)
        assert (send.attributes or {})["messaging.batch.message_count"] == 3
        assert "messaging.message.id" not in (send.attributes or {})
        by_job = {(s.attributes or {})["messaging.message.id"]: s for s in telemetry.finished(SpanKind.CONSUMER)}
        assert by_job[str(untraced.id)].links == ()
        assert all(by_job[str(h.id)].links[0].context.span_id == send.context.span_id for h in handles)
    finally:
        again.close()


def test_the_trace_context_reaches_a_worker_process_through_the_database(
    db_url: str, queue: JobQueue, telemetry: Telemetry, tmp_path: Path
) -> None:
    """Enqueued here (traced), run by `jobkit worker --otel` in another process: its span links to our send span."""
    spans = tmp_path / "spans.jsonl"
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--app", "tests.otel_app", "--otel"],
        env={**env_for(db_url), "JOBKIT_TEST_SPANS": str(spans)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        handle = AddOne.perform_later(n=41)
        assert handle.result(timeout=30) == 42
        deadline = time.monotonic() + 15
        while not spans.exists() or not spans.read_text().strip():
            assert time.monotonic() < deadline, "the worker exported no span"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    [send] = telemetry.finished(SpanKind.PRODUCER)
    [process] = [json.loads(line) for line in spans.read_text().splitlines()]
    assert (process["name"], process["kind"]) == ("process default", "CONSUMER"), output
    assert process["attributes"]["messaging.message.id"] == str(handle.id)
    assert process["attributes"]["jobkit.job.outcome"] == "completed"
    assert process["links"] == [
        {"trace_id": format(send.context.trace_id, "032x"), "span_id": format(send.context.span_id, "016x")}
    ], output

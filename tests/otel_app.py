"""An --app module for worker processes that export their spans to a file (JOBKIT_TEST_SPANS), one JSON line each."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import tests.jobs  # noqa: F401  (the job types the worker runs)


class FileExporter(SpanExporter):
    """Appends each finished span, with its links, as one JSON line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "kind": span.kind.name,
                            "trace_id": format(context.trace_id, "032x"),
                            "attributes": dict(span.attributes or {}),
                            "links": [
                                {
                                    "trace_id": format(link.context.trace_id, "032x"),
                                    "span_id": format(link.context.span_id, "016x"),
                                }
                                for link in span.links
                            ],
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["JOBKIT_TEST_SPANS"])))
trace.set_tracer_provider(provider)

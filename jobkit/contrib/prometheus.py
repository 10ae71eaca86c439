"""Prometheus metrics for jobkit (extra ``jobkit[prometheus]``).

Two sources, both registered by :func:`instrument`:

- counters and histograms fed by the queue's event bus (``queue.observe``): what *this*
  process did (jobs it enqueued, attempts its worker ended, jobs its rescuer took back);
- a collector that, once per scrape, reads the database-wide gauges (queue depth by state,
  oldest ready job's age, live workers) with one query for the queues and one for the workers.
  Every process that registers it reports the same values: aggregate them with ``max``, not
  ``sum`` (the shipped dashboard and alerts do).

Example::

    from prometheus_client import start_http_server
    from jobkit.contrib.prometheus import instrument

    metrics = instrument(jobkit.JobQueue.instance())
    start_http_server(9108)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobkit._vocabulary import ATTEMPT_ENDINGS, Event, EventType, JobState

if TYPE_CHECKING:
    from jobkit._queue import JobQueue

log = logging.getLogger("jobkit.metrics")

#: The live states the depth gauge always reports (0 when a queue has none), so a series never vanishes.
DEPTH_STATES = (JobState.PENDING, JobState.RUNNING, JobState.PAUSED)

# Seconds: from sub-millisecond jobs to hour-long ones.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class QueueCollector(Collector):
    """Database-wide gauges, read once per scrape: depth by (queue, state), oldest ready age, live workers."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        # Queues seen by an earlier scrape keep reporting (zeros) once their last job finished, so
        # their series never vanish and an alert on them never goes silent by absence.
        self._seen: set[str] = set()

    def describe(self) -> Iterator[Metric]:
        # Registering must not query the database: name the families without samples.
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "jobkit_queue_depth", "Jobs not finished, by queue and state.", labels=["queue", "state"]
            ),
            GaugeMetricFamily(
                "jobkit_queue_oldest_ready_age_seconds",
                "Seconds the oldest due pending job of the queue has waited (0 when none waits).",
                labels=["queue"],
            ),
            GaugeMetricFamily("jobkit_workers_alive", "Registered workers whose heartbeat is fresh."),
            GaugeMetricFamily("jobkit_database_up", "1 when this scrape could read the database, else 0."),
        )

    def collect(self) -> Iterator[Metric]:
        depth, oldest, alive, up = self._families()
        try:
            now = self.queue.clock.now()
            groups = self.queue.store.queue_gauges(now=now)
            workers = self.queue.workers()
        except Exception as exc:
            # A scrape must answer even when the database is away: say so rather than fail it.
            log.warning("metrics: the database could not be read (%s)", str(exc).splitlines()[0] if str(exc) else exc)
            up.add_metric([], 0)
            yield up
            return
        counts: dict[str, dict[str, int]] = {}
        ages: dict[str, float] = {}
        for group in groups:
            counts.setdefault(group.queue, {})[group.state] = group.count
            if group.oldest_due is not None:
                age = max(0.0, now - group.oldest_due)
                ages[group.queue] = max(ages.get(group.queue, 0.0), age)
        self._seen.update(counts)
        for queue_name in sorted(self._seen):
            states = counts.get(queue_name, {})
            for state in sorted({*DEPTH_STATES, *states}):
                depth.add_metric([queue_name, str(state)], states.get(state, 0))
            oldest.add_metric([queue_name], ages.get(queue_name, 0.0))
        alive.add_metric([], sum(1 for w in workers if w.alive))
        up.add_metric([], 1)
        yield from (depth, oldest, alive, up)


class JobkitMetrics:
    """The counters and histograms of one queue, fed by its event bus; ``close()`` stops and unregisters them."""

    def __init__(self, queue: JobQueue, registry: CollectorRegistry = REGISTRY, *, gauges: bool = True) -> None:
        self.queue = queue
        self.registry = registry
        self.enqueued = Counter(
            "jobkit_jobs_enqueued", "Jobs enqueued by this process.", ["queue", "name"], registry=registry
        )
        self.finished = Counter(
            "jobkit_jobs_finished",
            "Attempts ended by this process's worker, by outcome (completed, failed, retrying, cancelled, …).",
            ["queue", "name", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "jobkit_job_duration_seconds",
            "Seconds an attempt ran in its slot.",
            ["queue", "name"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "jobkit_job_wait_seconds",
            "Seconds from a job falling due to its attempt starting.",
            ["queue", "name"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.rescued = Counter(
            "jobkit_jobs_rescued", "Jobs of lost workers taken back by this process's rescuer.", registry=registry
        )
        #: The HTTP server of :func:`serve` (None when the application serves the registry itself).
        self.server: Any = None
        self.collector: QueueCollector | None = None
        if gauges:
            self.collector = QueueCollector(queue)
            registry.register(self.collector)
        self._untap: Callable[[], None] | None = queue.observe(self.observe)

    @property
    def port(self) -> int | None:
        """The port :func:`serve` listens on (None when not serving)."""
        return None if self.server is None else int(self.server.server_port)

    def observe(self, event: Event) -> None:
        """Count one event (called in the emitting thread by the queue's bus)."""
        kind = event.type
        if kind is EventType.ENQUEUED:
            self.enqueued.labels(_label(event.get("queue")), _label(event.name)).inc()
            return
        if kind is EventType.RESCUED:
            self.rescued.inc()
            return
        job = event.job
        if job is None:
            return  # an operator's action, not an attempt this process ran
        if kind is EventType.STARTED:
            self.wait.labels(job.queue, job.name).observe(max(0.0, self.queue.clock.now() - job.run_at))
        elif kind in ATTEMPT_ENDINGS:
            self.finished.labels(job.queue, job.name, str(kind)).inc()
            if event.ran is not None:
                self.duration.labels(job.queue, job.name).observe(event.ran)

    def close(self) -> None:
        """Stop counting and remove every jobkit metric from the registry."""
        if self._untap is not None:
            self._untap()
            self._untap = None
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for metric in (self.enqueued, self.finished, self.duration, self.wait, self.rescued, self.collector):
            if metric is not None:
                self.registry.unregister(metric)


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def instrument(queue: JobQueue, registry: CollectorRegistry = REGISTRY, *, gauges: bool = True) -> JobkitMetrics:
    """Count ``queue``'s events into ``registry`` and (``gauges``) add the database-wide gauges to its scrapes."""
    return JobkitMetrics(queue, registry, gauges=gauges)


def serve(queue: JobQueue, port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> JobkitMetrics:
    """Instrument ``queue`` and serve ``/metrics`` on ``addr:port`` from a daemon thread (``jobkit worker --metrics-port``).

    Port 0 picks a free port: read it back from ``metrics.port``.
    """
    metrics = instrument(queue, registry)
    try:
        server, _thread = start_http_server(port, addr, registry=registry)
    except BaseException:
        metrics.close()
        raise
    metrics.server = server
    return metrics


__all__ = ["JobkitMetrics", "QueueCollector", "instrument", "serve"]

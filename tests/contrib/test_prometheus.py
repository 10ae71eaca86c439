"""Prometheus metrics: counters fed by the event bus, database-wide gauges read per scrape, real HTTP scrapes."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobkit import JobQueue
from jobkit._clock import FakeClock
from jobkit.contrib.prometheus import JobkitMetrics, instrument, serve
from tests.jobs import AddOne, Flaky
from tests.observe import EventLog


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return samples(response.read().decode())


@pytest.fixture
def served(queue: JobQueue) -> Iterator[JobkitMetrics]:
    metrics = serve(queue, 0, "127.0.0.1", registry=CollectorRegistry())
    yield metrics
    metrics.close()


def test_a_running_worker_counts_its_jobs_in_a_real_scrape(queue: JobQueue, served: JobkitMetrics) -> None:
    """Enqueued, finished by outcome, duration and wait histograms, live workers: read over HTTP."""
    events = EventLog(queue)
    done = [AddOne.perform_later(n=n) for n in range(3)]
    flaky = Flaky.perform_later(times=1)  # fails once, then completes
    assert served.port is not None
    before = scrape(served.port)
    assert before[("jobkit_queue_depth", (("queue", "default"), ("state", "pending")))] == 4
    assert before[("jobkit_workers_alive", ())] == 0
    queue.start()
    for handle in done:
        handle.result(timeout=15)
    assert flaky.result(timeout=15) is not None
    events.wait_for(flaky.id, "completed")
    got = scrape(served.port)
    add = (("name", "tests.add_one"), ("queue", "default"))
    assert got[("jobkit_jobs_enqueued_total", add)] == 3
    assert got[("jobkit_jobs_finished_total", (*add[:1], ("outcome", "completed"), add[1]))] == 3
    flaky_labels = (("name", "tests.flaky"), ("outcome", "retrying"), ("queue", "default"))
    assert got[("jobkit_jobs_finished_total", flaky_labels)] == 1
    assert got[("jobkit_job_duration_seconds_count", add)] == 3
    assert got[("jobkit_job_wait_seconds_count", (("name", "tests.flaky"), ("queue", "default")))] == 2
    assert got[("jobkit_workers_alive", ())] == 1
    assert got[("jobkit_database_up", ())] == 1
    assert got[("jobkit_queue_depth", (("queue", "default"), ("state", "pending")))] == 0
    events.close()


def test_queue_gauges_come_from_the_database_at_each_scrape(db_url: str) -> None:
    """Depth by state and the oldest due job's age, as the database holds them when scraped (fake clock)."""
    import jobkit

    clock = FakeClock()
    queue = jobkit.configure(database_url=db_url, clock=clock)
    registry = CollectorRegistry()
    metrics = instrument(queue, registry)
    try:
        AddOne.perform_later(n=1)
        clock.advance(30)
        AddOne.perform_later(n=2)
        AddOne.set(queue="later").perform_in(timedelta(hours=1), n=3)
        clock.advance(10)
        got = samples(generate_latest(registry).decode())
        assert got[("jobkit_queue_depth", (("queue", "default"), ("state", "pending")))] == 2
        assert got[("jobkit_queue_depth", (("queue", "default"), ("state", "running")))] == 0
        assert got[("jobkit_queue_depth", (("queue", "later"), ("state", "pending")))] == 1
        assert got[("jobkit_queue_oldest_ready_age_seconds", (("queue", "default"),))] == pytest.approx(40)
        assert got[("jobkit_queue_oldest_ready_age_seconds", (("queue", "later"),))] == 0
        assert got[("jobkit_jobs_enqueued_total", (("name", "tests.add_one"), ("queue", "later")))] == 1
        queue.drain()
        got = samples(generate_latest(registry).decode())
        assert got[("jobkit_queue_depth", (("queue", "default"), ("state", "pending")))] == 0
        assert got[("jobkit_job_wait_seconds_sum", (("name", "tests.add_one"), ("queue", "default")))] == pytest.approx(
            50
        )
    finally:
        metrics.close()
        queue.close()
        JobQueue.set_instance(None)


def test_closing_unregisters_and_stops_counting(queue: JobQueue) -> None:
    """After close() the registry holds no jobkit metric and a new instrument() can register again."""
    registry = CollectorRegistry()
    metrics = instrument(queue, registry)
    metrics.close()
    AddOne.perform_later(n=1)
    assert "jobkit_" not in generate_latest(registry).decode()
    again = instrument(queue, registry)
    AddOne.perform_later(n=1)
    assert (
        samples(generate_latest(registry).decode())[
            ("jobkit_jobs_enqueued_total", (("name", "tests.add_one"), ("queue", "default")))
        ]
        == 1
    )
    again.close()


def test_the_dashboard_and_alerts_use_only_metrics_jobkit_exports(queue: JobQueue) -> None:
    """Every jobkit_* series named in docs/grafana/jobkit.json and docs/prometheus-alerts.yml is exported."""
    import json
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    registry = CollectorRegistry()
    metrics = instrument(queue, registry)
    try:
        AddOne.perform_later(n=1)
        queue.drain()
        AddOne.perform_later(n=2)  # left pending, so the queue gauges have a queue to report
        exported = {name for name, _labels in samples(generate_latest(registry).decode())}
    finally:
        metrics.close()
    exported |= {"jobkit_jobs_rescued_total"}  # a counter without labels appears once incremented
    dashboard = json.loads((docs / "grafana" / "jobkit.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    alerts = (docs / "prometheus-alerts.yml").read_text()
    named = set(re.findall(r"jobkit_[a-z_]+", " ".join(expressions) + alerts))
    assert named, "no jobkit metric found in the dashboard or the alerts"
    assert named <= exported, f"not exported: {sorted(named - exported)}"


def test_a_rescued_job_is_counted(queue: JobQueue) -> None:
    """A job held by a worker that never registered (a lost one) is rescued and counted once."""
    registry = CollectorRegistry()
    metrics = instrument(queue, registry, gauges=False)
    try:
        handle = Flaky.perform_later(times=0)
        [claimed] = queue.store.claim(
            worker="ghost-worker", limit=1, names=["tests.flaky"], queues=None, now=queue.clock.now()
        )
        assert claimed.id == handle.id
        queue.worker.rescue_once()
        got = samples(generate_latest(registry).decode())
        assert got[("jobkit_jobs_rescued_total", ())] == 1
        assert ("jobkit_queue_depth", (("queue", "default"), ("state", "pending"))) not in got  # gauges=False
    finally:
        metrics.close()

"""Clocks: a process whose clock is skewed can neither rescue healthy jobs nor delay anyone's jobs.

* SQLite has no server clock: each process stamps its heartbeat with its own. Rescuers judge a
  heartbeat by watching it change with their own monotonic time, so a worker ten minutes fast or
  slow keeps its jobs, a rescuer ten minutes fast takes nothing healthy, and a dead fast-clock
  worker is rescued within rescue_after and two rescue intervals of its last heartbeat. The same
  scenario runs on PostgreSQL, where heartbeats carry the server's clock.
* PostgreSQL (``db_clock``): run_at of jobs due now, retried, snoozed and rescued, and the claim's
  "due", come from the server, whatever the calling process's clock says.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

import jobkit
from jobkit import FakeClock, JobQueue
from jobkit._runtime.maintenance import rescue
from jobkit._store import HeartbeatObserver, NewJob, Store, Transition, open_store

NAME = "tests.clock_probe"
SKEW = 600.0
RESCUE_AFTER = 2.0
INTERVAL = 0.25


def skewed(offset: float) -> Callable[[], float]:
    """A wall clock ``offset`` seconds off."""
    return lambda: time.time() + offset


@pytest.fixture
def stores(db_url: str) -> Iterator[Callable[..., Store]]:
    """Make stores on one fresh database (each one a process with its own clock); all closed at the end."""
    made: list[Store] = []

    def make(**kwargs: object) -> Store:
        store = open_store(db_url, **kwargs)  # type: ignore[arg-type]
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            store.close()


class Beating:
    """A worker's heartbeat thread, beating every INTERVAL until stopped (the worker's death)."""

    def __init__(self, store: Store, worker_id: str) -> None:
        self.store = store
        self.worker_id = worker_id
        self.stop = threading.Event()
        self.last = 0.0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            assert self.store.heartbeat(self.worker_id) is not None
            self.last = time.monotonic()
            self.stop.wait(INTERVAL)

    def die(self) -> float:
        """Stop beating; returns the monotonic time of the last heartbeat."""
        self.stop.set()
        self.thread.join()
        return self.last


def hold_jobs(store: Store, worker_id: str, count: int) -> list[int]:
    """Register ``worker_id`` and have it claim ``count`` fresh jobs."""
    store.register_worker(worker_id, host="host", pid=os.getpid(), queues=None, concurrency=count)
    now = time.time()
    ids = store.enqueue([NewJob(NAME, "{}", "default", 0, now - 1, 3) for _ in range(count)], now=now)
    claimed = store.claim(worker=worker_id, limit=count, names=[NAME], queues=None, now=now)
    assert sorted(c.id for c in claimed) == sorted(ids)
    return ids


def test_skewed_workers_keep_their_jobs_and_a_dead_fast_one_is_rescued_in_time(
    stores: Callable[..., Store],
) -> None:
    """Workers 10 min fast and slow keep their jobs under fast and slow rescuers; the fast one's jobs are
    rescued within rescue_after + one rescue interval of its last heartbeat once it stops."""
    fast, slow = stores(process_clock=skewed(SKEW)), stores(process_clock=skewed(-SKEW))
    fast_jobs, slow_jobs = hold_jobs(fast, "fast-worker", 2), hold_jobs(slow, "slow-worker", 2)
    beats = {"fast": Beating(fast, "fast-worker"), "slow": Beating(slow, "slow-worker")}
    rescuers = [stores(process_clock=skewed(SKEW)), stores(process_clock=skewed(-SKEW))]
    rescued: list[tuple[float, int]] = []
    done = threading.Event()

    def rescue_loop(store: Store, name: str) -> None:
        while not done.is_set():
            for item in rescue(
                store,
                rescue_after=RESCUE_AFTER,
                max_crashes=3,
                now=store.process_clock(),
                exclude_worker=name,
                observer=store.heartbeats,
                margin=INTERVAL,  # as a worker passes it: min(heartbeat_interval, rescue_interval, ...)
            ):
                rescued.append((time.monotonic(), item["job_id"]))
            done.wait(INTERVAL)

    threads = [threading.Thread(target=rescue_loop, args=(s, f"rescuer-{i}")) for i, s in enumerate(rescuers)]
    for thread in threads:
        thread.start()
    try:
        done.wait(2 * RESCUE_AFTER + 4 * INTERVAL)
        assert rescued == [], "a healthy skewed worker's job was rescued"
        last_beat = beats["fast"].die()
        deadline = last_beat + RESCUE_AFTER + INTERVAL + 1.0  # 1 s for this machine's scheduling
        while len({job_id for _, job_id in rescued}) < len(fast_jobs) and time.monotonic() < deadline + 1.0:
            time.sleep(0.05)
        assert sorted({job_id for _, job_id in rescued}) == sorted(fast_jobs)
        assert max(at for at, _ in rescued) <= deadline
        assert max(at for at, _ in rescued) - last_beat >= RESCUE_AFTER - INTERVAL  # and not early
    finally:
        done.set()
        for thread in threads:
            thread.join()
        beats["slow"].die()
    statuses = {row.id: row.status for row in rescuers[0].list_jobs(name=NAME)}
    assert [statuses[i] for i in slow_jobs] == ["running", "running"]


def make_stale(store: Store, worker_id: str) -> None:
    """Push a worker's heartbeat far into the past: by any clock comparison it looks dead."""
    with store.write() as conn:
        conn.execute(
            sa.text("UPDATE jobkit_workers SET heartbeat_at = heartbeat_at - 1000 WHERE id = :id"), {"id": worker_id}
        )


def test_a_new_rescuer_waits_to_see_a_heartbeat_stand_still(stores: Callable[..., Store]) -> None:
    """SQLite: a rescuer that just started rescues nothing it has not seen unchanged for rescue_after.
    PostgreSQL judges by the server's clock and rescues at once."""
    store = stores()
    ids = hold_jobs(store, "quiet-worker", 1)
    make_stale(store, "quiet-worker")
    ticks = [0.0]
    observer = HeartbeatObserver(monotonic=lambda: ticks[0])
    first = rescue(store, rescue_after=RESCUE_AFTER, max_crashes=3, now=time.time(), observer=observer)
    if store.is_postgres:
        assert [item["job_id"] for item in first] == ids
        return
    assert first == []
    ticks[0] += RESCUE_AFTER - 0.01
    assert rescue(store, rescue_after=RESCUE_AFTER, max_crashes=3, now=time.time(), observer=observer) == []
    ticks[0] += 0.01
    assert [
        item["job_id"]
        for item in rescue(store, rescue_after=RESCUE_AFTER, max_crashes=3, now=time.time(), observer=observer)
    ] == ids


def test_a_heartbeat_that_changes_keeps_the_worker_alive_for_the_observer(stores: Callable[..., Store]) -> None:
    """SQLite: a heartbeat value that keeps changing, even backwards, keeps its worker's jobs."""
    store = stores()
    if store.is_postgres:
        pytest.skip("PostgreSQL stamps heartbeats with the server's clock and judges them by it")
    hold_jobs(store, "odd-worker", 1)
    ticks = [0.0]
    observer = HeartbeatObserver(monotonic=lambda: ticks[0])
    for step in range(5):
        with store.write() as conn:  # a clock stepped back and forth between beats
            conn.execute(
                sa.text("UPDATE jobkit_workers SET heartbeat_at = :at WHERE id = 'odd-worker'"),
                {"at": 1000.0 + (-1) ** step * step},
            )
        assert rescue(store, rescue_after=RESCUE_AFTER, max_crashes=3, now=time.time(), observer=observer) == []
        ticks[0] += RESCUE_AFTER


def test_a_worker_never_rescues_its_own_jobs(stores: Callable[..., Store]) -> None:
    """exclude_worker: a worker whose own heartbeat stalled keeps its jobs from its own rescue pass."""
    store = stores()
    ids = hold_jobs(store, "busy-worker", 2)
    make_stale(store, "busy-worker")
    ticks = [0.0]
    observer = HeartbeatObserver(monotonic=lambda: ticks[0])
    rescue(
        store,
        rescue_after=RESCUE_AFTER,
        max_crashes=3,
        now=time.time(),
        exclude_worker="busy-worker",
        observer=observer,
    )
    ticks[0] += 2 * RESCUE_AFTER
    assert (
        rescue(
            store,
            rescue_after=RESCUE_AFTER,
            max_crashes=3,
            now=time.time(),
            exclude_worker="busy-worker",
            observer=observer,
        )
        == []
    )
    taken = rescue(
        store,
        rescue_after=RESCUE_AFTER,
        max_crashes=3,
        now=time.time(),
        exclude_worker="other-worker",
        observer=observer,
    )
    assert sorted(item["job_id"] for item in taken) == ids


# -- PostgreSQL: the server's clock -----------------------------------------------------------------------


@pytest.fixture
def pg_store(db_url: str) -> Iterator[Store]:
    """A store on the server's clock (PostgreSQL only; SQLite has no server clock)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server clock: every process uses its own (see the observation tests)")
    store = open_store(db_url, db_clock=True)
    try:
        yield store
    finally:
        store.close()


def test_immediate_enqueue_and_claim_use_the_server_clock(pg_store: Store) -> None:
    """A producer 10 min fast enqueues a job due now; a worker 10 min slow claims it at once."""
    fast_now = time.time() + SKEW
    [one] = pg_store.enqueue([NewJob(NAME, "{}", "default", 0, fast_now, 0)], now=fast_now)
    many = pg_store.enqueue([NewJob(NAME, "{}", "default", 0, fast_now, 0) for _ in range(3)], now=fast_now)
    server = pg_store.now()
    for job_id in [one, *many]:
        row = pg_store.get(job_id)
        assert row is not None and abs(row.run_at - server) < 5 and abs(row.created_at - server) < 5
    claimed = pg_store.claim(worker="slow-worker", limit=10, names=[NAME], queues=None, now=time.time() - SKEW)
    assert sorted(c.id for c in claimed) == sorted([one, *many])


def test_a_future_enqueue_keeps_its_time(pg_store: Store) -> None:
    """A job scheduled ahead keeps the run_at it was given (perform_at is the caller's own word)."""
    now = time.time()
    [job_id] = pg_store.enqueue([NewJob(NAME, "{}", "default", 0, now + 3600, 0)], now=now)
    row = pg_store.get(job_id)
    assert row is not None and row.run_at == now + 3600


@pytest.mark.parametrize("kind", ["retry", "snooze", "release"])
def test_requeued_jobs_run_at_comes_from_the_server(pg_store: Store, kind: str) -> None:
    """A completer 10 min fast writes a retry, snooze or release: run_at is the server's now plus the delay."""
    now = time.time()
    [job_id] = pg_store.enqueue([NewJob(NAME, "{}", "default", 0, now, 3)], now=now)
    [claimed] = pg_store.claim(worker="fast-worker", limit=1, names=[NAME], queues=None, now=now)
    values: dict[str, object] = {"delay": 30.0}
    if kind == "retry":
        values["errors"] = "[]"
    assert pg_store.transition(Transition(kind, job_id, "fast-worker", claimed.lease, values), now=now + SKEW)
    row = pg_store.get(job_id)
    assert row is not None and abs(row.run_at - (pg_store.now() + 30.0)) < 5


def test_rescued_jobs_run_at_comes_from_the_server(pg_store: Store) -> None:
    """A rescuer 10 min fast puts a lost job back due at the server's now, so it runs at once."""
    now = time.time()
    [job_id] = pg_store.enqueue([NewJob(NAME, "{}", "default", 0, now, 3)], now=now)
    pg_store.claim(worker="ghost-worker", limit=1, names=[NAME], queues=None, now=now)
    assert [item["job_id"] for item in rescue(pg_store, rescue_after=RESCUE_AFTER, max_crashes=3, now=now + SKEW)] == [
        job_id
    ]
    row = pg_store.get(job_id)
    assert row is not None and abs(row.run_at - pg_store.now()) < 5
    assert [c.id for c in pg_store.claim(worker="slow-worker", limit=1, names=[NAME], queues=None, now=now - SKEW)] == [
        job_id
    ]


def test_the_queue_uses_the_server_clock_only_on_the_real_clock(db_url: str) -> None:
    """JobQueue turns db_clock on with the system clock (PostgreSQL) and keeps a fake clock's time."""
    real = jobkit.JobQueue(database_url=db_url)
    fake = jobkit.JobQueue(database_url=db_url, clock=FakeClock(0.0))
    try:
        assert real.store.db_clock is db_url.startswith("postgresql")
        assert fake.store.db_clock is False
    finally:
        real.close()
        fake.close()
        JobQueue.set_instance(None)


def test_the_observer_rescues_within_one_interval_of_the_last_beat_it_saw_change() -> None:
    """A beat seen changing on one pass is judged lost by rescue_after after the pass before, not after."""
    ticks = [0.0]
    observer = HeartbeatObserver(monotonic=lambda: ticks[0])
    interval, after = 0.5, 3.0
    assert observer.stale([("w", 1.0)], after, margin=interval) == {}
    ticks[0] = interval
    assert observer.stale([("w", 2.0)], after, margin=interval) == {}  # its last beat, somewhere in (0, 0.5]
    ticks[0] = interval + after - interval - 0.01
    assert observer.stale([("w", 2.0)], after, margin=interval) == {}  # surely silent only 2.49 s
    ticks[0] = after
    assert observer.stale([("w", 2.0)], after, margin=interval) == {"w": 2.0}  # maybe 3 s, surely 2.5 s


def test_the_observer_never_judges_a_worker_beating_every_interval_lost() -> None:
    """However the passes fall, a value that changes every heartbeat is never stale."""
    ticks = [0.0]
    observer = HeartbeatObserver(monotonic=lambda: ticks[0])
    for step in range(200):
        ticks[0] = step * 0.37
        assert observer.stale([("w", float(step // 2))], 3.0, margin=0.5) == {}

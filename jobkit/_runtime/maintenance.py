"""Maintenance: rescue jobs of lost workers, prune old rows, fold SQLite's WAL back; and their timers.

Each pass is one method that returns what it did; the timers (:mod:`jobkit._runtime.timers`,
the only APScheduler import) run them in the background, and a pass that fails simply runs
again at its next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from jobkit._clock import Clock
from jobkit._runtime import policy
from jobkit._runtime.timers import Timers
from jobkit._settings import Settings
from jobkit._store import HeartbeatObserver, Rescue, Rescued, Store
from jobkit._vocabulary import Event, EventType

log = logging.getLogger("jobkit.worker")

#: Seconds between idle housekeeping passes (SQLite WAL checkpoints).
HOUSEKEEP_INTERVAL = 30.0


def rescue(
    store: Store,
    *,
    rescue_after: float,
    max_crashes: int,
    now: float,
    limit: int = 500,
    exclude_worker: str | None = None,
    observer: HeartbeatObserver | None = None,
    margin: float = 0.0,
) -> list[Rescued]:
    """One rescue pass: the store finds the lost jobs, the policy decides each, the store writes them.

    A lost job is counted exactly as a crash that spent its attempt (:func:`policy.for_lost`):
    back to pending while it has attempts and crashes left, failed otherwise. See
    ``Store.lost_jobs`` for when a worker counts as lost and ``Store.rescue_jobs`` for the fence.
    """
    lost = store.lost_jobs(
        rescue_after=rescue_after,
        now=now,
        limit=limit,
        exclude_worker=exclude_worker,
        observer=observer,
        margin=margin,
    )
    rescues = []
    for job in lost:
        verdict = policy.for_lost(job.attempt, job.max_retries, job.crashes, max_crashes)
        rescues.append(Rescue(job, verdict.kind, verdict.poisoned))
    return store.rescue_jobs(rescues, now=now)


@dataclass(frozen=True, slots=True)
class MaintenanceConfig:
    """When a silent worker is judged lost, how often to look, and how long finished rows are kept."""

    rescue_after: float = 30.0
    rescue_interval: float = 5.0
    heartbeat_interval: float = 5.0
    max_crashes: int = 3
    retention: float = 7 * 24 * 3600.0
    #: How long cron fire rows are kept: their own age, so pruning jobs never reopens a fire time.
    cron_retention: float = 30 * 24 * 3600.0
    prune_interval: float = 300.0
    housekeep_interval: float = HOUSEKEEP_INTERVAL

    def __post_init__(self) -> None:
        for name in ("rescue_after", "rescue_interval", "heartbeat_interval", "prune_interval", "housekeep_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {getattr(self, name)}")
        for name in ("retention", "cron_retention"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")
        if self.max_crashes < 1:
            raise ValueError(f"max_crashes must be >= 1, got {self.max_crashes}")

    @classmethod
    def from_settings(cls, settings: Settings) -> MaintenanceConfig:
        """Maintenance's part of the queue's settings."""
        return cls(
            rescue_after=settings.rescue_after,
            rescue_interval=settings.rescue_interval,
            heartbeat_interval=settings.heartbeat_interval,
            max_crashes=settings.max_crashes,
            retention=settings.retention,
            cron_retention=settings.cron_retention,
            prune_interval=settings.prune_interval,
        )

    @property
    def observation_margin(self) -> float:
        """How much earlier than rescue_after a heartbeat watched on SQLite may be judged silent.

        A heartbeat seen changing on one rescue pass changed at most one pass earlier; judging it a
        little early by that much keeps rescue within rescue_after + one interval, while the
        silence a worker is surely judged by stays above a live worker's beat gap.
        """
        return min(self.heartbeat_interval, self.rescue_interval, (self.rescue_after - self.heartbeat_interval) / 2)


@dataclass(frozen=True, slots=True)
class Maintained:
    """What one full maintenance pass did."""

    rescued: list[Rescued] = field(default_factory=list)
    pruned: int = 0
    housekept: bool = False
    fires_pruned: int = 0


class Maintenance:
    """Rescue, prune and housekeeping passes, and the timers that run them."""

    def __init__(
        self,
        config: MaintenanceConfig,
        store: Store,
        *,
        clock: Clock,
        emit: Callable[[Event], None],
        worker_id: Callable[[], str],
        busy: Callable[[], bool],
        on_rescued: Callable[[], None],
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.emit = emit
        #: This worker's id: its own jobs are never rescued by its own passes.
        self.worker_id = worker_id
        #: True while jobs run here (a WAL checkpoint would compete with their writes).
        self.busy = busy
        #: Called when a rescue put jobs back: the producer may claim them.
        self.on_rescued = on_rescued
        self._timers = Timers()

    def start(self) -> None:
        """Schedule the passes: rescue soon after start, prune a little later, housekeeping each interval."""
        config = self.config
        self._timers.every(config.rescue_interval, self.rescue_once, "rescue", first_in=0.5)
        self._timers.every(config.prune_interval, self.prune_once, "prune", first_in=5.0)
        self._timers.every(config.prune_interval, self.prune_fires_once, "prune-fires", first_in=6.0)
        self._timers.every(config.housekeep_interval, self.housekeep_once, "housekeep")
        self._timers.start()

    def stop(self) -> None:
        """Stop the timers, waiting for a running pass to finish."""
        self._timers.stop()

    def run_once(self) -> Maintained:
        """One rescue, one prune and one housekeeping pass, in the calling thread."""
        return Maintained(self.rescue_once(), self.prune_once(), self.housekeep_once(), self.prune_fires_once())

    def rescue_once(self) -> list[Rescued]:
        """One rescue pass: jobs of workers whose heartbeat is older than ``rescue_after`` go back or fail."""
        config = self.config
        # Never our own jobs: a busy moment of this process must not lose its live jobs. On SQLite
        # the store's observer judges other workers' heartbeats by watching them change.
        rescued = rescue(
            self.store,
            rescue_after=config.rescue_after,
            max_crashes=config.max_crashes,
            now=self.clock.now(),
            exclude_worker=self.worker_id(),
            observer=self.store.heartbeats,
            margin=config.observation_margin,
        )
        for item in rescued:
            log.warning("rescued job %s from lost worker %s -> %s", item["job_id"], item["worker"], item["status"])
            details = {key: value for key, value in item.items() if key != "job_id"}
            self.emit(Event.of(EventType.RESCUED, item["job_id"], **details))
        if rescued:
            self.on_rescued()
        return rescued

    def prune_once(self) -> int:
        """One prune pass: delete terminal jobs older than ``retention``."""
        return self.store.prune(older_than=self.clock.now() - self.config.retention)

    def prune_fires_once(self) -> int:
        """One prune pass over cron fire rows: delete those recorded more than ``cron_retention`` ago."""
        return self.store.prune_fires(older_than=self.clock.now() - self.config.cron_retention)

    def housekeep_once(self) -> bool:
        """One housekeeping pass while idle: fold SQLite's WAL back and truncate it; returns whether it ran.

        Skipped while jobs run (a checkpoint competes with their writes); a no-op on PostgreSQL.
        """
        if self.busy():
            return False
        return self.store.checkpoint_wal()

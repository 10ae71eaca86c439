"""The runtime services' shape: validated configs from settings, and the watchdog's run_once."""

from __future__ import annotations

import pytest

from jobkit._runtime.deadlines import Action, Deadlines
from jobkit._runtime.lease import LeaseConfig
from jobkit._runtime.ledger import HeldJob
from jobkit._runtime.maintenance import MaintenanceConfig
from jobkit._runtime.pool import PoolConfig
from jobkit._runtime.producer import ProducerConfig
from jobkit._settings import load_settings
from tests.unit.doubles import Ticks, held


def test_every_config_is_built_from_the_settings() -> None:
    """Each service takes its part of the queue's settings."""
    settings = load_settings(concurrency=7, queues="a,b", poll_interval=2, kill_grace=1, rescue_after=9)
    assert PoolConfig.from_settings(settings) == PoolConfig(7, 1.0, 4)
    assert ProducerConfig.from_settings(settings).queues == ("a", "b")
    assert LeaseConfig.from_settings(settings).rescue_after == 9
    assert MaintenanceConfig.from_settings(settings).max_crashes == settings.max_crashes


@pytest.mark.parametrize(
    "build",
    [
        lambda: PoolConfig(0),
        lambda: PoolConfig(1, kill_grace=-1),
        lambda: ProducerConfig(poll_interval=0),
        lambda: ProducerConfig(queues=()),
        lambda: LeaseConfig(heartbeat_interval=5, rescue_after=5),
        lambda: MaintenanceConfig(retention=-1),
        lambda: MaintenanceConfig(rescue_interval=0),
    ],
)
def test_a_config_that_cannot_work_is_refused(build: object) -> None:
    """A config is checked when it is built, with the setting named in the error."""
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_the_rescue_observation_margin_stays_below_a_beat() -> None:
    """On SQLite a watched heartbeat may be judged a little early, never by more than one beat."""
    config = MaintenanceConfig(rescue_after=30, rescue_interval=5, heartbeat_interval=5)
    assert config.observation_margin == 5
    assert MaintenanceConfig(rescue_after=3, rescue_interval=0.5, heartbeat_interval=2).observation_margin == 0.5


def test_the_watchdog_acts_on_due_deadlines_in_time_order() -> None:
    """run_once acts on what is due now, earliest first, and keeps the rest."""
    ticks = Ticks(0.0)
    acted: list[tuple[int, Action]] = []
    deadlines = Deadlines(lambda job, action: acted.append((job.job.id, action)), monotonic=ticks)
    deadlines.at(5.0, held(1), Action.ABANDON)
    deadlines.at(1.0, held(2), Action.TIMEOUT)
    deadlines.at(9.0, held(3), Action.TIMEOUT)
    assert deadlines.run_once() == 0
    ticks.now = 6.0
    assert deadlines.run_once() == 2
    assert acted == [(2, Action.TIMEOUT), (1, Action.ABANDON)]
    assert len(deadlines) == 1


def test_an_action_that_raises_does_not_stop_the_others() -> None:
    """One job's failing action is logged; the other due deadlines are still acted on."""
    ticks = Ticks(0.0)
    acted: list[int] = []

    def act(job: HeldJob, action: Action) -> None:
        if job.job.id == 1:
            raise RuntimeError("bug")
        acted.append(job.job.id)

    deadlines = Deadlines(act, monotonic=ticks)
    deadlines.at(0.0, held(1), Action.TIMEOUT)
    deadlines.at(0.0, held(2), Action.TIMEOUT)
    assert deadlines.run_once() == 2
    assert acted == [2]

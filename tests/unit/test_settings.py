"""Settings from keyword arguments and JOBKIT_* environment variables."""

from __future__ import annotations

import pytest

from jobkit import ConfigurationError
from jobkit._settings import load_settings, parse_size


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBKIT_* variables fill settings; queues split on commas."""
    monkeypatch.setenv("JOBKIT_CONCURRENCY", "12")
    monkeypatch.setenv("JOBKIT_QUEUES", "mailers, default")
    settings = load_settings()
    assert settings.concurrency == 12
    assert settings.queues == ("mailers", "default")


def test_keyword_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit keyword beats the environment."""
    monkeypatch.setenv("JOBKIT_CONCURRENCY", "12")
    assert load_settings(concurrency=3).concurrency == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"database_url": "mysql://x"}, "database_url"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"heartbeat_interval": 10, "rescue_after": 5}, "rescue_after"),
        ({"nonsense": 1}, "nonsense"),
        ({"pool": "forks"}, "pool"),
        ({"max_tasks_per_child": 0}, "max_tasks_per_child"),
        ({"max_memory_per_child": "lots"}, "max_memory_per_child"),
        ({"max_memory_per_child": "0MB"}, "max_memory_per_child"),
    ],
)
def test_invalid_settings_give_a_clear_error(overrides: dict[str, object], message: str) -> None:
    """Bad values raise ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**overrides)


def test_defaults() -> None:
    """The embedded SQLite default, concurrency 5, a poll of a few seconds."""
    settings = load_settings()
    assert settings.database_url == "sqlite:///jobkit.sqlite3"
    assert settings.concurrency == 5
    assert 1 <= settings.poll_interval <= 5


def test_the_pool_and_child_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBKIT_POOL, JOBKIT_MAX_TASKS_PER_CHILD and JOBKIT_MAX_MEMORY_PER_CHILD (a size with a unit) are read."""
    monkeypatch.setenv("JOBKIT_POOL", "processes")
    monkeypatch.setenv("JOBKIT_MAX_TASKS_PER_CHILD", "100")
    monkeypatch.setenv("JOBKIT_MAX_MEMORY_PER_CHILD", "200MB")
    settings = load_settings()
    assert (settings.pool, settings.max_tasks_per_child, settings.max_memory_per_child) == (
        "processes",
        100,
        200 * 1024 * 1024,
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("512KB", 512 * 1024), ("200MB", 200 * 1024**2), ("1.5GiB", 3 * 1024**3 // 2), ("7 b", 7)],
)
def test_sizes_are_read_in_binary_units(text: str, size: int) -> None:
    """A memory limit is bytes, or a number with K/M/G/T (binary multiples), as Celery counts them."""
    assert parse_size(text) == size

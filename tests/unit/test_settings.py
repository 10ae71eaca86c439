"""Settings from keyword arguments and JOBKIT_* environment variables."""

from __future__ import annotations

import pytest

from jobkit import ConfigurationError
from jobkit._settings import load_settings


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

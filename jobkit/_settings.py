"""Validated settings, from keyword arguments or ``JOBKIT_*`` environment variables."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobkit.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite:///jobkit.sqlite3"


class Settings(BaseSettings):
    """Every knob of a :class:`~jobkit.JobQueue`; each one also reads ``JOBKIT_<NAME>``.

    Example::

        JOBKIT_DATABASE_URL=postgresql+psycopg://localhost/app JOBKIT_CONCURRENCY=10 jobkit worker --app app.jobs
    """

    model_config = SettingsConfigDict(env_prefix="JOBKIT_", extra="forbid", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    concurrency: int = Field(default=5, ge=1, le=10_000)
    #: The queues to work (None: all): names, or names with slots of their own ({"default": 10, "mailers": 2};
    #: ``JOBKIT_QUEUES=default=10,mailers=2``), where the worker's concurrency is their sum.
    queues: Annotated[tuple[str, ...] | dict[str, int] | None, NoDecode] = None
    poll_interval: float = Field(default=5.0, gt=0, le=3600)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    rescue_after: float = Field(default=30.0, gt=0)
    rescue_interval: float = Field(default=5.0, gt=0)
    max_crashes: int = Field(default=3, ge=1)
    shutdown_grace: float = Field(default=25.0, ge=0)
    cancel_check_interval: float = Field(default=1.0, gt=0)
    retention: float = Field(default=7 * 24 * 3600.0, ge=0, description="seconds to keep terminal rows")
    prune_interval: float = Field(default=300.0, gt=0)
    cron_interval: float = Field(default=1.0, gt=0, le=3600, description="seconds between scheduler ticks")
    cron_retention: float = Field(
        default=30 * 24 * 3600.0, ge=0, description="seconds to keep cron fire rows (apart from the jobs' retention)"
    )
    auto_migrate: bool = True
    completion_batch: int = Field(default=200, ge=1)
    completion_flush: float = Field(default=0.002, ge=0)
    prefetch: bool = Field(default=True, description="claim a few jobs ahead while jobs turn over fast")
    kill_grace: float = Field(
        default=5.0, ge=0, le=3600, description="seconds a job that ignores its token is given before it is abandoned"
    )
    max_stuck_threads: int = Field(
        default=4, ge=0, description="abandoned executor threads tolerated before the worker drains and exits"
    )
    pool: Literal["threads", "processes"] = Field(
        default="threads", description="where jobs without an isolation option run: threads or child processes"
    )
    max_tasks_per_child: int | None = Field(
        default=None, ge=1, description="jobs a child process runs before it is replaced (None: no limit)"
    )
    max_memory_per_child: int | None = Field(
        default=None,
        ge=1,
        description="resident bytes (or '200MB') past which a child is replaced after its job (None: no limit)",
    )
    loop_lag_threshold: float = Field(
        default=1.0, gt=0, le=3600, description="seconds an async job may block the event loop before it is logged"
    )
    max_payload_depth: int = Field(default=64, ge=2, le=500, description="deepest nesting of stored JSON")
    max_payload_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="largest JSON text stored for arguments, results, progress"
    )

    @field_validator("queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",")]
        if isinstance(value, list | tuple) and all(isinstance(part, str) for part in value):
            parts = [part.strip() for part in value if part.strip()]
            if not parts:
                return None
            limited = [part for part in parts if "=" in part]
            if not limited:
                return tuple(parts)
            if len(limited) != len(parts):
                raise ValueError(
                    "give every queue its slots (default=10,mailers=2) or none of them (default,mailers), "
                    f"got {','.join(parts)}"
                )
            slots: dict[str, Any] = {}
            for part in parts:
                name, _, count = part.partition("=")
                try:
                    slots[name.strip()] = int(count)
                except ValueError:
                    raise ValueError(f"queue {name.strip()!r}: slots must be a whole number, got {count!r}") from None
            return slots
        return value

    @field_validator("queues")
    @classmethod
    def _queue_slots(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if not value:
                return None
            for name, count in value.items():
                if not name or count < 1:
                    raise ValueError(f"queue {name!r} needs a name and at least 1 slot, got {count}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _concurrency_from_queue_slots(cls, data: Any) -> Any:
        # Queues with their own slots: the worker runs as many jobs at once as they have slots together.
        if not isinstance(data, dict):
            return data
        queues = cls._split_queues(data.get("queues"))
        if isinstance(queues, dict) and all(isinstance(n, int) and not isinstance(n, bool) for n in queues.values()):
            total = sum(queues.values())
            given = data.get("concurrency")
            if given is not None and int(given) != total:
                raise ValueError(f"concurrency {given} does not match the {total} slots of the queues {queues}")
            data = {**data, "queues": queues, "concurrency": total}
        return data

    @property
    def queue_slots(self) -> dict[str, int] | None:
        """Each queue's own slots, when the queues were given with them (None: the queues share ``concurrency``)."""
        return dict(self.queues) if isinstance(self.queues, dict) else None

    @field_validator("max_memory_per_child", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError(
                f"{_without_password(value)!r} is not a jobkit database URL: use sqlite:///PATH (a file, "
                "relative to the working directory) or postgresql+psycopg://USER@HOST/DATABASE"
            )
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("rescue_after")
    @classmethod
    def _rescue_after_heartbeat(cls, value: float, info: Any) -> float:
        heartbeat = info.data.get("heartbeat_interval")
        if heartbeat is not None and value <= heartbeat:
            raise ValueError(f"rescue_after ({value}s) must be longer than heartbeat_interval ({heartbeat}s)")
        return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Bytes from ``"1048576"``, ``"512KB"``, ``"200MB"``, ``"1.5GiB"`` (binary units, as ``ps`` and Celery count).

    Example::

        parse_size("200MB")  # 209715200
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a number of bytes or a size such as '200MB', got {text!r}")
    number, unit = match.groups()
    prefix = (unit or "").lower()[:1]
    return int(float(number) * _UNITS[prefix if prefix in _UNITS else ""])


def load_settings(**overrides: Any) -> Settings:
    """Build settings from overrides and the environment, turning errors into ConfigurationError."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {_message(err)}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid jobkit settings: {problems}") from exc


def _message(error: Any) -> str:
    """A validation problem's text; our own validators' without pydantic's ``Value error, `` prefix."""
    raised = (error.get("ctx") or {}).get("error")
    return str(raised) if error.get("type") == "value_error" and raised is not None else str(error["msg"])


def _without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***`` (for error messages)."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)

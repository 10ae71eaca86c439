"""Jobs that misbehave on purpose: each one once wedged a worker (issue 9); importable by worker processes."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from pydantic import BaseModel

from jobkit import BaseJob, job


class WedgeArgs(BaseModel):
    seconds: float = 0.0


class Unprintable(Exception):
    """An exception whose text cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


#: Set by IgnoresToken jobs when their sleep is over (their abandoned thread returns).
returned = threading.Event()


@job(name="wedge.system_exit", schema=WedgeArgs, max_retries=1, backoff=lambda attempt: 0.0)
class ExitsSync(BaseJob[WedgeArgs]):
    def perform(self, args: WedgeArgs) -> None:
        sys.exit(3)


@job(name="wedge.system_exit_async", schema=WedgeArgs, max_retries=1, backoff=lambda attempt: 0.0)
class ExitsAsync(BaseJob[WedgeArgs]):
    async def perform(self, args: WedgeArgs) -> None:
        await asyncio.sleep(0)
        raise SystemExit(4)


@job(name="wedge.keyboard_interrupt", schema=WedgeArgs, max_retries=1, backoff=lambda attempt: 0.0)
class InterruptsSync(BaseJob[WedgeArgs]):
    def perform(self, args: WedgeArgs) -> None:
        raise KeyboardInterrupt


@job(name="wedge.keyboard_interrupt_async", schema=WedgeArgs, max_retries=1, backoff=lambda attempt: 0.0)
class InterruptsAsync(BaseJob[WedgeArgs]):
    async def perform(self, args: WedgeArgs) -> None:
        raise KeyboardInterrupt


@job(name="wedge.unprintable", schema=WedgeArgs, max_retries=1, backoff=lambda attempt: 0.0)
class RaisesUnprintable(BaseJob[WedgeArgs]):
    def perform(self, args: WedgeArgs) -> None:
        raise Unprintable


@job(name="wedge.deep_result", schema=WedgeArgs, max_retries=1, backoff=lambda attempt: 0.0)
class DeepResult(BaseJob[WedgeArgs]):
    def perform(self, args: WedgeArgs) -> Any:
        return _deep(100_000)


@job(name="wedge.ignores_token", schema=WedgeArgs, max_retries=0, timeout=0.3)
class IgnoresToken(BaseJob[WedgeArgs]):
    """Sleeps through its timeout and its token: only abandoning its thread ends the attempt."""

    def perform(self, args: WedgeArgs) -> str:
        time.sleep(args.seconds)
        returned.set()
        return "woke up"


@job(name="wedge.ignores_cancel", schema=WedgeArgs, max_retries=2, backoff=lambda attempt: 0.0)
class IgnoresCancel(BaseJob[WedgeArgs]):
    """No timeout; ignores cancel, pause and shutdown alike."""

    def perform(self, args: WedgeArgs) -> str:
        time.sleep(args.seconds)
        return "woke up"


@job(name="wedge.nan_backoff", schema=WedgeArgs, max_retries=3, backoff=lambda attempt: float("nan"))
class NanBackoff(BaseJob[WedgeArgs]):
    """Fails, and its custom backoff answers NaN."""

    def perform(self, args: WedgeArgs) -> None:
        raise RuntimeError("fails so that the backoff is asked")


@job(name="wedge.nan_snooze", schema=WedgeArgs, max_retries=1, backoff=lambda attempt: 0.0)
class NanSnooze(BaseJob[WedgeArgs]):
    def perform(self, args: WedgeArgs) -> None:
        from jobkit import Snooze

        raise Snooze(float("nan"))


@job(name="wedge.fails_slowly", schema=WedgeArgs, max_retries=200, backoff=lambda attempt: 0.0)
class FailsSlowly(BaseJob[WedgeArgs]):
    """Runs briefly, then fails: almost always running or retrying, the window a cancel used to fall into."""

    def perform(self, args: WedgeArgs) -> None:
        time.sleep(args.seconds)
        raise RuntimeError("fails again")


@job(name="wedge.snoozes_slowly", schema=WedgeArgs, max_retries=0)
class SnoozesSlowly(BaseJob[WedgeArgs]):
    def perform(self, args: WedgeArgs) -> None:
        from jobkit import Snooze

        time.sleep(args.seconds)
        raise Snooze(0)

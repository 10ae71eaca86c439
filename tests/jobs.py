"""Job types used by the tests; importable by worker subprocesses (``jobkit worker --app tests.jobs``)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from pydantic import BaseModel

from jobkit import BaseJob, Discard, Snooze, job


class NumberArgs(BaseModel):
    n: int


class SleepArgs(BaseModel):
    seconds: float
    ledger: str | None = None


class FailArgs(BaseModel):
    times: int = 100
    key: str = "default"


_lock = threading.Lock()
attempts: dict[str, int] = {}
concurrency = {"now": 0, "peak": 0}


@job(name="tests.add_one", schema=NumberArgs, max_retries=0)
class AddOne(BaseJob[NumberArgs]):
    def perform(self, args: NumberArgs) -> int:
        return args.n + 1


@job(name="tests.async_double", schema=NumberArgs)
class AsyncDouble(BaseJob[NumberArgs]):
    async def perform(self, args: NumberArgs) -> int:
        await asyncio.sleep(0)
        return args.n * 2


@job(name="tests.flaky", schema=FailArgs, max_retries=3, backoff=lambda attempt: 0.0)
class Flaky(BaseJob[FailArgs]):
    """Fails the first ``times`` attempts, then succeeds."""

    def perform(self, args: FailArgs) -> str:
        if self.attempt <= args.times:
            raise RuntimeError(f"boom on attempt {self.attempt}")
        return f"ok after {self.attempt}"


@job(name="tests.short_backoff", schema=FailArgs, max_retries=3, backoff=lambda attempt: 0.3)
class ShortBackoff(Flaky):
    """Flaky, with a 0.3 s backoff."""


@job(name="tests.slow_backoff", schema=FailArgs, max_retries=3, backoff=lambda attempt: 10.0 * attempt)
class SlowBackoff(Flaky):
    """Flaky, with a 10 s x attempt backoff."""


@job(name="tests.discards", schema=FailArgs, max_retries=5)
class Discards(BaseJob[FailArgs]):
    def perform(self, args: FailArgs) -> None:
        raise Discard("not worth retrying")


@job(name="tests.snoozes", schema=FailArgs, max_retries=0)
class Snoozes(BaseJob[FailArgs]):
    def perform(self, args: FailArgs) -> int:
        if self.attempt == 1 and args.times > 0:
            with _lock:
                attempts[args.key] = attempts.get(args.key, 0) + 1
                if attempts[args.key] <= args.times:
                    raise Snooze(0)
        return self.attempt


@job(name="tests.sleepy", schema=SleepArgs, max_retries=0)
class Sleepy(BaseJob[SleepArgs]):
    """Sleeps cooperatively (wakes early when its token fires) and tracks peak concurrency."""

    def perform(self, args: SleepArgs) -> str:
        with _lock:
            concurrency["now"] += 1
            concurrency["peak"] = max(concurrency["peak"], concurrency["now"])
        try:
            if args.ledger:
                _ledger(args.ledger, f"start {self.job_id} {self.attempt} {os.getpid()} {time.time()}")
            if self.cancel_token.wait(args.seconds):
                self.cancel_token.raise_if_cancelled()
            if args.ledger:
                _ledger(args.ledger, f"end {self.job_id} {self.attempt} {os.getpid()} {time.time()}")
            return "slept"
        finally:
            with _lock:
                concurrency["now"] -= 1


@job(name="tests.slow_timeout", schema=SleepArgs, max_retries=1, timeout=0.3, backoff=lambda attempt: 0.0)
class SlowWithTimeout(BaseJob[SleepArgs]):
    def perform(self, args: SleepArgs) -> str:
        if self.cancel_token.wait(args.seconds):
            self.cancel_token.raise_if_cancelled()
        return "finished"


@job(name="tests.async_timeout", schema=SleepArgs, max_retries=0, timeout=0.3)
class AsyncWithTimeout(BaseJob[SleepArgs]):
    async def perform(self, args: SleepArgs) -> str:
        await asyncio.sleep(args.seconds)
        return "finished"


@job(name="tests.echo", max_retries=0)
class Echo(BaseJob[dict[str, Any]]):
    """No schema: any JSON object is accepted and returned."""

    def perform(self, args: dict[str, Any]) -> dict[str, Any]:
        return args


@job(name="tests.logs", max_retries=0)
class Logs(BaseJob[dict[str, Any]]):
    """Writes one line through its own logger."""

    def perform(self, args: dict[str, Any]) -> str:
        self.logger.info("hello from the job")
        return "logged"


def _ledger(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")

"""Rate-limited job types for the tests, importable by the worker processes that share a window."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

import jobkit
from jobkit import BaseJob, Snooze, job

#: Shared by two job types below, and by the tests' consume() calls.
SHARED = "tests-shared"
jobkit.limits.define(SHARED, "3/m")


class RateArgs(BaseModel):
    n: int = 0
    account_id: int = 0
    ledger: str = ""


@job(name="tests.rate.per_minute", schema=RateArgs, rate_limit="60/m", max_retries=0)
class PerMinute(BaseJob[RateArgs]):
    """At most 60 starts in any minute."""

    def perform(self, args: RateArgs) -> int:
        return args.n


@job(name="tests.rate.ten_per_second", schema=RateArgs, rate_limit="10/s", max_retries=0)
class TenPerSecond(BaseJob[RateArgs]):
    """Writes its id and pid to a ledger: which worker process started it."""

    def perform(self, args: RateArgs) -> int:
        if args.ledger:
            with open(args.ledger, "a", encoding="utf-8") as file:
                file.write(f"{self.job_id} {os.getpid()} {time.time()!r}\n")
        return args.n


@job(
    name="tests.rate.per_account",
    schema=RateArgs,
    rate_limit="2/m",
    rate_limit_key=lambda args: f"account:{args.account_id}",
)
class PerAccountRate(BaseJob[RateArgs]):
    """Two starts a minute for each account, whatever the others do."""

    def perform(self, args: RateArgs) -> int:
        return args.account_id


@job(name="tests.rate.shared_a", schema=RateArgs, rate_limit=SHARED)
class SharedA(BaseJob[RateArgs]):
    def perform(self, args: RateArgs) -> int:
        return args.n


@job(name="tests.rate.shared_b", schema=RateArgs, rate_limit=SHARED)
class SharedB(BaseJob[RateArgs]):
    def perform(self, args: RateArgs) -> int:
        return args.n


@job(name="tests.rate.heavy", schema=RateArgs, rate_limit="10/m", weight=4)
class Heavy(BaseJob[RateArgs]):
    """Each start takes 4 of the 10 a minute: two fit, a third waits."""

    def perform(self, args: RateArgs) -> int:
        return args.n


@job(name="tests.rate.reschedule", schema=RateArgs, rate_limit="1/m", on_limit="reschedule")
class Rescheduled(BaseJob[RateArgs]):
    """One a minute; the others move to their next slot instead of waiting pending-due."""

    def perform(self, args: RateArgs) -> int:
        return args.n


snoozed: set[int | None] = set()


@job(name="tests.rate.snoozer", schema=RateArgs, rate_limit="1/m")
class Snoozer(BaseJob[RateArgs]):
    """Snoozes on its first run: that start is given back."""

    def perform(self, args: RateArgs) -> int:
        if self.job_id not in snoozed:
            snoozed.add(self.job_id)
            raise Snooze(1)
        return args.n


@job(name="tests.rate.unique", schema=RateArgs, unique=True, rate_limit="1/m")
class UniqueLimited(BaseJob[RateArgs]):
    """Unique per arguments, and one start a minute."""

    def perform(self, args: RateArgs) -> int:
        return args.n


failed_once: set[int | None] = set()


@job(name="tests.rate.flaky", schema=RateArgs, rate_limit="1/m", max_retries=1, backoff=lambda attempt: 0.0)
class Flaky(BaseJob[RateArgs]):
    """Fails its first run: the retry is a new start and waits for the window."""

    def perform(self, args: RateArgs) -> int:
        if self.job_id not in failed_once:
            failed_once.add(self.job_id)
            raise RuntimeError("first run fails")
        return args.n


@job(
    name="tests.rate.keyed",
    schema=RateArgs,
    rate_limit="5/m",
    concurrency_key=lambda args: f"account:{args.account_id}",
    concurrency_limit=1,
)
class KeyedAndLimited(BaseJob[RateArgs]):
    """A rate limit and a concurrency key together: both hold."""

    def perform(self, args: RateArgs) -> int:
        return args.account_id


# -- several and ordered concurrency keys

ran_in_order: list[int] = []


class RegionArgs(BaseModel):
    account_id: int = 0
    region: str = "eu"
    n: int = 0
    ledger: str = ""


@job(
    name="tests.keys.multi",
    schema=RegionArgs,
    concurrency_key=lambda args: (f"account:{args.account_id}", f"region:{args.region}"),
    concurrency_limit=(1, 2),
)
class AccountInRegion(BaseJob[RegionArgs]):
    """One per account and two per region at once: both keys must have room."""

    def perform(self, args: RegionArgs) -> int:
        return args.account_id


@job(
    name="tests.keys.ordered",
    schema=RegionArgs,
    concurrency_key=lambda args: f"account:{args.account_id}",
    ordered=True,
)
class OrderedPerAccount(BaseJob[RegionArgs]):
    """Strictly one after another per account, in enqueue order; records the order it ran in."""

    def perform(self, args: RegionArgs) -> int:
        ran_in_order.append(args.n)
        if args.ledger:
            with open(args.ledger, "a", encoding="utf-8") as file:
                file.write(f"start {args.account_id} {args.n} {time.time()!r} {os.getpid()}\n")
            time.sleep(0.02)
            with open(args.ledger, "a", encoding="utf-8") as file:
                file.write(f"end {args.account_id} {args.n} {time.time()!r} {os.getpid()}\n")
        return args.n

"""A CPU-bound job that runs in a child process: it gets a core of its own, and a hard timeout."""

from __future__ import annotations

from pydantic import BaseModel

from jobkit import BaseJob, job


class FibArgs(BaseModel):
    n: int


@job(name="example.fib", schema=FibArgs, isolation="process", timeout=60, max_retries=0)
class Fib(BaseJob[FibArgs]):
    """The n-th Fibonacci number the slow way: pure Python, so threads would share one core."""

    def perform(self, args: FibArgs) -> int:
        a, b = 0, 1
        for _ in range(args.n):
            a, b = b, a + b
        return a

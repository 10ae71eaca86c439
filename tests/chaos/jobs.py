"""Job types for the chaos tests' worker subprocesses (``jobkit worker --app tests.chaos.jobs``).

Every execution appends to the ledger (see :mod:`tests.chaos.ledger`) outside the
database, so the checker can compare what really ran with what the database says.
"""

from __future__ import annotations

import os
import time
import uuid

from pydantic import BaseModel

from jobkit import BaseJob, JobQueue, job
from tests.chaos.ledger import record


class WorkArgs(BaseModel):
    seconds: float = 0.01
    #: True: wake as soon as the token fires (shutdown, fencing); False: ignore the token, like a stuck call.
    cooperative: bool = True
    #: Report progress first: one more fenced write per job, from the job's own thread.
    progress: bool = False


def _worker_id() -> str:
    return JobQueue.instance().worker.id


@job(name="chaos.work", schema=WorkArgs, max_retries=5)
class Work(BaseJob[WorkArgs]):
    """Sleeps, then returns a fresh token that the ledger also records, so the stored result names its execution."""

    def perform(self, args: WorkArgs) -> dict[str, object]:
        record("start", self.job_id, self.attempt, worker=_worker_id())
        if args.progress:
            self.progress(50, stage="working")
        if args.cooperative:
            if self.cancel_token.wait(args.seconds):
                record("cancelled", self.job_id, self.attempt, reason=self.cancel_token.reason)
                self.cancel_token.raise_if_cancelled()
        else:
            time.sleep(args.seconds)
        token = uuid.uuid4().hex
        record("end", self.job_id, self.attempt, token=token)
        return {"token": token, "pid": os.getpid()}


@job(name="chaos.poison", max_retries=10)
class Poison(BaseJob[dict[str, object]]):
    """Kills the worker process that runs it, every time (an out-of-memory kill, a segfault in C code)."""

    def perform(self, args: dict[str, object]) -> None:
        record("start", self.job_id, self.attempt, worker=_worker_id())
        os._exit(1)

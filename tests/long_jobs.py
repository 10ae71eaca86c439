"""Long-running job types for the progress, checkpoint, pause and admin tests.

Importable by worker subprocesses (``jobkit worker --app tests.long_jobs``), so every
control goes through files in a ``control`` directory rather than in-process state:

- ``hold-<stage>``: the job waits at the start of that stage until the file is removed
  (or its token fires: a pause or cancel lands there);
- ``fail-<stage>``: the job raises a transient error once at that stage (the file is consumed);
- ``ran.log``: one line ``<attempt> <stage>`` each time a stage's work actually runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import string
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from jobkit import BaseJob, Discard, job

STAGES = ("extract", "transform", "load")


class ImportArgs(BaseModel):
    doc: str
    control: str | None = None


class TightArgs(BaseModel):
    calls: int


class StagesArgs(BaseModel):
    stages: list[str]


class KindArgs(BaseModel):
    fail_times: int = 0


class TransientError(ConnectionError):
    """An upstream hiccup: worth retrying."""


# -- the pipeline's pure steps: the same input always gives the same output ----------------------


def extract(doc: str) -> dict[str, Any]:
    return {"words": doc.split()}


def normalise(word: str) -> str:
    return word.strip(string.punctuation).lower()


def load(tokens: list[str]) -> dict[str, Any]:
    counts = dict(sorted(Counter(t for t in tokens if t).items()))
    digest = hashlib.sha256(json.dumps(counts).encode()).hexdigest()
    return {"words": len(tokens), "unique": len(counts), "top": max(counts, key=counts.__getitem__), "digest": digest}


def expected_result(doc: str) -> dict[str, Any]:
    """What an uninterrupted import of ``doc`` returns."""
    return load([normalise(w) for w in extract(doc)["words"]])


# -- file controls ----------------------------------------------------------------------------------


def _control(args: ImportArgs, name: str) -> Path | None:
    return None if args.control is None else Path(args.control) / name


def _log_ran(args: ImportArgs, attempt: int, stage: str) -> None:
    path = _control(args, "ran.log")
    if path is not None:
        with path.open("a", encoding="utf-8") as f:
            f.write(f"{attempt} {stage}\n")


def ran(control: Path) -> list[str]:
    """The ``<attempt> <stage>`` lines the job logged, in order."""
    path = control / "ran.log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _fail_once(args: ImportArgs, stage: str) -> None:
    path = _control(args, f"fail-{stage}")
    if path is not None and path.exists():
        path.unlink()
        raise TransientError(f"upstream unavailable during {stage}")


def _start_at(job: BaseJob[Any]) -> tuple[int, dict[str, Any]]:
    """The index of the first stage still to run, and the state the last finished stage saved."""
    done = job.last_checkpoint
    if done is None:
        return 0, {}
    return STAGES.index(done.stage) + 1, dict(done.data)


@job(name="long.import_document", schema=ImportArgs, max_retries=3, backoff=lambda attempt: 0.0)
class ImportDocument(BaseJob[ImportArgs]):
    """Extract, transform and load a document; resumes after the last finished stage."""

    def perform(self, args: ImportArgs) -> dict[str, Any]:
        first, state = _start_at(self)
        for index in range(first, len(STAGES)):
            stage = STAGES[index]
            self.progress(100 * index / len(STAGES), stage=stage, message=f"starting {stage}")
            hold = _control(args, f"hold-{stage}")
            while hold is not None and hold.exists():
                if self.cancel_token.wait(0.01):
                    self.cancel_token.raise_if_cancelled()
            _fail_once(args, stage)
            _log_ran(args, self.attempt, stage)
            state = self._run_stage(index, stage, args, state)
            self.checkpoint(stage, state)
        self.progress(100, stage="load", message="done")
        return dict(state["result"])

    def _run_stage(self, index: int, stage: str, args: ImportArgs, state: dict[str, Any]) -> dict[str, Any]:
        if stage == "extract":
            return extract(args.doc)
        if stage == "transform":
            words = state["words"]
            tokens = []
            for i, word in enumerate(words):
                self.cancel_token.raise_if_cancelled()
                tokens.append(normalise(word))
                self.progress(100 * (index + (i + 1) / len(words)) / len(STAGES), message=f"{i + 1}/{len(words)}")
            return {"tokens": tokens}
        return {"result": load(state["tokens"])}


@job(name="long.import_document_async", schema=ImportArgs, max_retries=3, backoff=lambda attempt: 0.0)
class ImportDocumentAsync(BaseJob[ImportArgs]):
    """The same import as an ``async def perform``."""

    async def perform(self, args: ImportArgs) -> dict[str, Any]:
        first, state = _start_at(self)
        for index in range(first, len(STAGES)):
            stage = STAGES[index]
            self.progress(100 * index / len(STAGES), stage=stage, message=f"starting {stage}")
            hold = _control(args, f"hold-{stage}")
            while hold is not None and hold.exists():
                await asyncio.sleep(0.01)
                self.cancel_token.raise_if_cancelled()
            _fail_once(args, stage)
            _log_ran(args, self.attempt, stage)
            if stage == "extract":
                state = extract(args.doc)
            elif stage == "transform":
                state = {"tokens": [normalise(w) for w in state["words"]]}
            else:
                state = {"result": load(state["tokens"])}
            await asyncio.sleep(0)
            self.checkpoint(stage, state)
        self.progress(100, stage="load", message="done")
        return dict(state["result"])


@job(name="long.tight_progress", schema=TightArgs, max_retries=0)
class TightProgress(BaseJob[TightArgs]):
    """Reports progress in a tight loop, the way a careless job would."""

    def perform(self, args: TightArgs) -> int:
        for i in range(args.calls):
            self.progress(100 * i / args.calls, stage="crunch", message=f"item {i}")
        self.progress(100, stage="crunch", message="done")
        return args.calls


@job(name="long.quick_stages", schema=StagesArgs, max_retries=0)
class QuickStages(BaseJob[StagesArgs]):
    """Runs through its stages as fast as it can (a poller misses most of them)."""

    def perform(self, args: StagesArgs) -> list[str]:
        for i, stage in enumerate(args.stages):
            self.progress(100 * i / len(args.stages), stage=stage, message=f"stage {i + 1}", index=i)
        return args.stages


class Unrecoverable(PermissionError):
    """A failure that retrying cannot fix."""


@job(name="long.discards", schema=KindArgs, max_retries=3, backoff=lambda attempt: 0.0)
class RaisesDiscard(BaseJob[KindArgs]):
    def perform(self, args: KindArgs) -> None:
        raise Discard("the document was deleted")


@job(
    name="long.discard_on",
    schema=KindArgs,
    max_retries=3,
    backoff=lambda attempt: 0.0,
    discard_on=(Unrecoverable,),
)
class RaisesDiscardOn(BaseJob[KindArgs]):
    def perform(self, args: KindArgs) -> None:
        raise Unrecoverable("no access to the bucket")


@job(
    name="long.retry_on",
    schema=KindArgs,
    max_retries=3,
    backoff=lambda attempt: 0.0,
    retry_on=(TransientError,),
)
class RetriesOnlyTransient(BaseJob[KindArgs]):
    """Fails transiently ``fail_times`` times, then succeeds; any other error is permanent."""

    def perform(self, args: KindArgs) -> str:
        if args.fail_times < 0:
            raise KeyError("a bug, not a hiccup")
        if self.attempt <= args.fail_times:
            raise TransientError(f"timeout on attempt {self.attempt}")
        return f"ok on attempt {self.attempt}"


class HoldArgs(BaseModel):
    steps: int
    control: str


@job(name="long.progress_then_hold", schema=HoldArgs, max_retries=0)
class ProgressThenHold(BaseJob[HoldArgs]):
    """Reports ``steps`` progress calls at once, then waits until ``hold`` is removed from ``control``."""

    def perform(self, args: HoldArgs) -> int:
        for i in range(args.steps):
            self.progress(50, stage="work", message=f"step {i}")
        hold = Path(args.control) / "hold"
        while hold.exists():
            if self.cancel_token.wait(0.01):
                self.cancel_token.raise_if_cancelled()
        return args.steps


# -- waiting on events instead of sleeping ---------------------------------------------------------


class FixArgs(BaseModel):
    control: str


@job(name="long.fails_until_fixed", schema=FixArgs, max_retries=0, queue="imports")
class FailsUntilFixed(BaseJob[FixArgs]):
    """Fails while ``broken`` exists in ``control``; an operator fixes the cause and retries it."""

    def perform(self, args: FixArgs) -> str:
        if (Path(args.control) / "broken").exists():
            raise RuntimeError("the upstream bucket is misconfigured")
        return "fixed"

"""Job types the dashboard tests use; importable by worker subprocesses (``--app tests.dashboard_jobs``)."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from jobkit import BaseJob, job

XSS = "<script>alert('x')</script>"


class MailArgs(BaseModel):
    to: str = Field(description="who gets it")
    count: int = Field(default=1, ge=1, le=10)
    urgent: bool = False
    api_key: SecretStr | None = None
    password: str | None = None


@job(name="dash.mail", schema=MailArgs, max_retries=0, queue="mailers")
class Mail(BaseJob[MailArgs]):
    def perform(self, args: MailArgs) -> dict[str, int]:
        return {"sent": args.count}


class FlagArgs(BaseModel):
    flag: str
    hold: str | None = None


@job(name="dash.flaky", schema=FlagArgs, max_retries=0)
class Flaky(BaseJob[FlagArgs]):
    """Fails with an error of stored text while its flag file exists; waits while its hold file exists."""

    def perform(self, args: FlagArgs) -> str:
        self.progress(40, stage="checking", message="looking at the flag")
        deadline = time.monotonic() + 30
        while args.hold and Path(args.hold).exists() and time.monotonic() < deadline:
            self.cancel_token.raise_if_cancelled()
            time.sleep(0.05)
        if Path(args.flag).exists():
            raise RuntimeError(f"flag {Path(args.flag).name} is up {XSS}")
        return "ok"


class StepsArgs(BaseModel):
    steps: int = 10
    pause: float = 0.3


@job(name="dash.steps", schema=StepsArgs, max_retries=0, queue="long")
class Steps(BaseJob[StepsArgs]):
    """Reports progress step by step."""

    def perform(self, args: StepsArgs) -> int:
        for step in range(args.steps):
            self.cancel_token.raise_if_cancelled()
            self.progress(100 * step / args.steps, stage=f"step {step}", message=f"{step} of {args.steps}")
            time.sleep(args.pause)
        return args.steps


class NoteArgs(BaseModel):
    text: str


@job(name=f"dash.xss{XSS}", schema=NoteArgs, max_retries=0)
class Hostile(BaseJob[NoteArgs]):
    """Stored text everywhere: its name, stage, message and traceback all hold markup."""

    def perform(self, args: NoteArgs) -> None:
        self.progress(50, stage=f"stage{XSS}", message=f"message{XSS}")
        self.checkpoint(f"cp{XSS}", {"note": XSS})
        raise ValueError(f"boom{XSS}")


@job(name="dash.unused", schema=NoteArgs, max_retries=0)
class Unused(BaseJob[NoteArgs]):
    """Registered, never enqueued: the job list names it all the same."""

    def perform(self, args: NoteArgs) -> None:
        return None

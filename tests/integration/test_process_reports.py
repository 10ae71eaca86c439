"""Progress, checkpoints, pause and resume, streams and logs of process-isolated jobs, as for threads."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import pytest

from jobkit import JobEvent, JobQueue
from jobkit._clock import FakeClock
from tests.integration.test_long_running import DOC, collect_stream, stage_sequence, stages_run
from tests.long_jobs import STAGES, expected_result, ran
from tests.observe import EventLog
from tests.proc_jobs import ProcImportDocument, ProcImportDocumentAsync, ProcReports, ProcSysExit


@pytest.mark.parametrize("job", [ProcImportDocument, ProcImportDocumentAsync], ids=["sync", "async"])
def test_a_process_job_paused_at_a_stage_resumes_from_its_checkpoint(
    queue: JobQueue, events: EventLog, control: Path, job: type[ProcImportDocument]
) -> None:
    """Pause reaches the child; the job is paused with its checkpoint and, resumed, runs each stage once."""
    (control / "hold-transform").touch()
    queue.start()
    handle = job.perform_later(doc=DOC, control=str(control))
    events.wait_for(handle.id, "progress", timeout=30, stage="transform")
    assert handle.pause() == "pausing"
    events.wait_for(handle.id, "paused")
    info = handle.refresh()
    assert (info.status, info.attempt, info.errors) == ("paused", 0, [])
    assert info.checkpoint is not None and info.checkpoint["stage"] == "extract"
    assert stages_run(control) == ["extract"]
    (control / "hold-transform").unlink()
    assert handle.resume() == "pending"
    assert handle.result(timeout=30) == expected_result(DOC)
    assert ran(control) == [f"1 {s}" for s in STAGES]


def test_a_stream_of_a_process_job_sees_every_stage_then_the_result(queue: JobQueue) -> None:
    """Progress reported in the child reaches a stream in order, then the completion with the result."""
    handle = ProcImportDocument.perform_later(doc=DOC)
    seen: list[JobEvent] = []
    reader = collect_stream(handle, seen)
    queue.start()
    reader.join(40)
    assert stage_sequence(seen) == list(STAGES)
    assert seen[-1].type == "completed" and seen[-1].result == expected_result(DOC)
    percents = [e.percent for e in seen if e.percent is not None]
    assert percents == sorted(percents) and percents[-1] == 100


def test_a_retried_process_job_resumes_from_the_checkpoint_its_child_wrote(queue: JobQueue, control: Path) -> None:
    """A transient error at 'load' is retried from the checkpoint: extract and transform run once."""
    (control / "fail-load").touch()
    queue.start()
    handle = ProcImportDocument.perform_later(doc=DOC, control=str(control))
    assert handle.result(timeout=30) == expected_result(DOC)
    assert stages_run(control) == ["extract", "transform", "load"]
    assert [e["type"] for e in handle.refresh().errors] == ["TransientError"]


def test_log_records_of_a_child_reach_the_workers_loggers(queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    """A job's self.logger in a child logs through the worker's logger of the same name."""
    caplog.set_level(logging.INFO)
    queue.start()
    result = ProcReports.perform_later(stages=2).result(timeout=30)
    assert result["pid"] != os.getpid()
    assert any(f"reports finished in {result['pid']}" in r.getMessage() for r in caplog.records)


def test_a_process_job_runs_inline_on_a_fake_clock_and_keeps_its_times(
    clocked_queue: JobQueue, clock: FakeClock
) -> None:
    """run_once runs a process job in a child too; its error history is stamped on the worker's (fake) clock."""
    clock.advance(timedelta(days=365))
    handle = ProcSysExit.perform_later()
    assert clocked_queue.run_once() == 1
    [error] = handle.refresh().errors
    assert error["type"] == "SystemExit"
    assert abs(error["at"] - clock.now()) < 60  # a year from the real time: the child kept the worker's clock

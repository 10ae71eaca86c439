"""handle.why() and `jobkit jobs why ID`: one line per reason a pending job waits, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner

from jobkit import FakeClock, JobQueue
from jobkit.cli import main
from tests.jobs import AddOne
from tests.unique_jobs import SyncAccount


def register(queue: JobQueue, *, queues: list[str] | None = None, names: list[str] | None = None) -> None:
    """A live worker row, as a worker process with these queues and job types writes it."""
    queue.store.register_worker("w-why", host="h", pid=1, queues=queues, concurrency=1, names=names)


def test_a_job_scheduled_for_later_says_when(clocked_queue: JobQueue, clock: FakeClock) -> None:
    """A job written for later says when it runs, and is due once the clock passes it."""
    register(clocked_queue)
    handle = AddOne.perform_in(timedelta(minutes=5), n=1)
    assert handle.why().startswith("scheduled for later: runs at ")
    assert handle.why().endswith("(in 300.0 s)")
    clock.advance(timedelta(minutes=6))
    assert handle.why().startswith("due now")


def test_a_paused_queue_is_named(queue: JobQueue) -> None:
    """A job in a paused queue names the queue and how to resume it."""
    register(queue)
    handle = AddOne.perform_later(n=1)
    queue.pause_queue("default")
    assert handle.why() == "queue 'default' is paused (jobkit queues resume default)"
    queue.resume_queue("default")
    assert handle.why().startswith("due now")


def test_no_worker_running(queue: JobQueue) -> None:
    """With no live worker row, the job says so."""
    assert AddOne.perform_later(n=1).why() == "no worker is running"


def test_no_worker_for_its_queue(queue: JobQueue) -> None:
    """Live workers that work other queues only: the job's queue is named."""
    register(queue, queues=["mailers"])
    assert AddOne.perform_later(n=1).why() == "no worker registered for queue 'default'"


def test_no_worker_for_its_job_type(queue: JobQueue) -> None:
    """Live workers that do not run this job type: the type is named."""
    register(queue, names=["tests.echo"])
    assert AddOne.perform_later(n=1).why() == "no worker registered for job type 'tests.add_one' (on queue 'default')"


def test_a_worker_that_runs_it(queue: JobQueue) -> None:
    """A live worker for its queue and type: the job is due, waiting for a slot."""
    register(queue, queues=["default"], names=["tests.add_one"])
    assert AddOne.perform_later(n=1).why() == "due now: waiting for a free slot on a worker that runs it"


def test_a_real_worker_registers_its_job_types(queue: JobQueue) -> None:
    """A started worker records its types, so a job it runs is not blamed on a missing worker."""
    queue.pause_queue("default")  # keep the job pending while the worker runs
    queue.start()
    handle = AddOne.perform_later(n=1)
    assert handle.why() == "queue 'default' is paused (jobkit queues resume default)"
    queue.stop(grace=2)


def test_a_duplicate_names_the_job_it_found(queue: JobQueue) -> None:
    """A duplicate handle says whose duplicate it is, then why that job waits."""
    first = SyncAccount.perform_later(account_id=3)
    again = SyncAccount.perform_later(account_id=3)
    assert again.why() == f"duplicate of job {first.id}: no worker is running"
    assert first.why() == "no worker is running"


def test_a_job_that_is_not_pending_is_not_waiting(queue: JobQueue) -> None:
    """A finished job is not waiting, and says its state."""
    handle = AddOne.perform_later(n=1)
    queue.run_once()
    assert handle.why() == "not waiting: it is completed"


def test_the_cli_prints_the_same_line(queue: JobQueue) -> None:
    """`jobkit jobs why ID` prints the line; a missing job is an error."""
    handle = AddOne.perform_later(n=1)
    runner = CliRunner()
    url = queue.settings.database_url
    shown = runner.invoke(main, ["--database-url", url, "jobs", "why", str(handle.id)])
    assert (shown.exit_code, shown.output) == (0, "no worker is running\n")
    missing = runner.invoke(main, ["--database-url", url, "jobs", "why", "999999"])
    assert missing.exit_code != 0 and "job 999999 does not exist" in missing.output

"""Damaged rows: readers never raise, and one bad row never stops a rescue pass.

Rows are damaged the way a hand edit, an old bug or a disk would: invalid JSON in a payload
column, an error history that is not a list, a time out of range, a running job that names no
worker. On SQLite and PostgreSQL, ``refresh()``, ``queue.jobs()``, ``queue.job_info()`` and the CLI
show the damage (``JobInfo.damaged``) instead of raising, and rescue passes still rescue every
lost job, the damaged ones included.
"""

from __future__ import annotations

import json
import os

import sqlalchemy as sa
from click.testing import CliRunner

from jobkit import JobQueue
from jobkit._runtime.maintenance import rescue
from jobkit._snapshots import UNREADABLE
from jobkit._store import Store
from jobkit.cli import main
from tests.jobs import AddOne, Flaky

#: column -> SQL value that damages it, for both databases.
DAMAGE: dict[str, tuple[str, str]] = {
    "args invalid JSON": ("args", "'{\"n\": '"),
    "args not an object": ("args", "'[1, 2]'"),
    "result invalid JSON": ("result", "'nope'"),
    "progress invalid JSON": ("progress", "'{'"),
    "progress not an object": ("progress", "'7'"),
    "checkpoint invalid JSON": ("checkpoint", "'[['"),
    "errors invalid JSON": ("errors", "'[{\"type\": '"),
    "errors not a list": ("errors", '\'{"type": "Boom"}\''),
    "errors entries not objects": ("errors", "'[1, \"two\"]'"),
    "run_at far future": ("run_at", "1e300"),
    "run_at far past": ("run_at", "-1e300"),
    "created_at far future": ("created_at", "1e300"),
    "started_at far future": ("started_at", "1e300"),
    "finished_at far past": ("finished_at", "-1e300"),
}


def damage(store: Store, job_id: int, column: str, value_sql: str) -> None:
    """Write a damaged value straight into one column."""
    with store.write() as conn:
        conn.execute(sa.text(f"UPDATE jobkit_jobs SET {column} = {value_sql} WHERE id = :id"), {"id": job_id})


def damaged_ids(queue: JobQueue) -> dict[str, int]:
    """One job per kind of damage; returns label -> job id."""
    ids: dict[str, int] = {}
    for label, (column, value) in DAMAGE.items():
        handle = AddOne.perform_later(n=1)
        damage(queue.store, handle.id, column, value)
        ids[label] = handle.id
    if queue.store.is_postgres:
        handle = AddOne.perform_later(n=1)
        damage(queue.store, handle.id, "run_at", "'NaN'::float8")
        ids["run_at NaN"] = handle.id
    else:
        # SQLite stores whatever it is given: a time that is text.
        handle = AddOne.perform_later(n=1)
        damage(queue.store, handle.id, "run_at", "'soon'")
        ids["run_at text"] = handle.id
    return ids


def test_readers_never_raise_on_damaged_rows(queue: JobQueue) -> None:
    """refresh(), job_info() and jobs() read every damaged row, each noting what was damaged."""
    ids = damaged_ids(queue)
    listed = {info.id: info for info in queue.jobs(limit=1000)}
    for label, job_id in ids.items():
        info = queue.handle(job_id).refresh()
        assert info.damaged, f"{label}: no damage noted"
        assert queue.job_info(job_id) == info
        assert listed[job_id].damaged == info.damaged
        assert isinstance(info.errors, list) and all(isinstance(e, dict) for e in info.errors)
        assert isinstance(info.args, dict)
        assert info.progress is None or isinstance(info.progress, dict)


def test_damage_is_shown_explicitly(queue: JobQueue) -> None:
    """Unreadable JSON keeps its raw text under a marker; a time out of range is clamped or None, and noted."""
    ids = damaged_ids(queue)
    info = queue.handle(ids["args invalid JSON"]).refresh()
    assert info.args == {UNREADABLE: '{"n": '}
    assert len(info.damaged) == 1 and info.damaged[0].startswith("args: not readable as JSON (")
    history = queue.handle(ids["errors not a list"]).refresh().errors
    assert history[0]["type"] == "DamagedHistory" and history[0]["raw"] == '{"type": "Boom"}'
    far = queue.handle(ids["run_at far future"]).refresh()
    assert far.run_at.year == 9999 and far.damaged == ["run_at: out of range (1e+300)"]
    assert queue.handle(ids["started_at far future"]).refresh().started_at is None
    sound = AddOne.perform_later(n=2).refresh()
    assert sound.damaged == []


def test_streaming_a_damaged_job_does_not_raise(queue: JobQueue) -> None:
    """A handle's stream reads a job whose progress is damaged; it ends when the job does."""
    ids = damaged_ids(queue)
    handle = queue.handle(ids["progress not an object"])
    assert handle.cancel() == "cancelled"
    assert [event.type for event in handle.stream(timeout=5)][-1] == "cancelled"


def test_cli_lists_and_shows_damaged_rows(queue: JobQueue) -> None:
    """`jobkit jobs list` and `jobkit jobs show` print damaged rows instead of failing."""
    ids = damaged_ids(queue)
    runner = CliRunner()
    url = queue.settings.database_url
    listed = runner.invoke(main, ["--database-url", url, "jobs", "list", "--limit", "1000"])
    assert listed.exit_code == 0, listed.output
    for job_id in ids.values():
        shown = runner.invoke(main, ["--database-url", url, "jobs", "show", str(job_id)])
        assert shown.exit_code == 0, shown.output
        json.loads(shown.output)


# -- rescue ---------------------------------------------------------------------------------------------


def lost_jobs(queue: JobQueue, count: int) -> list[int]:
    """``count`` jobs running under a worker that has no row (lost at once)."""
    handles = [Flaky.perform_later(times=0, key=str(i)) for i in range(count)]
    claimed = queue.store.claim(
        worker="ghost-worker", limit=count, names=["tests.flaky"], queues=None, now=queue.clock.now()
    )
    assert sorted(c.id for c in claimed) == sorted(h.id for h in handles)
    return [h.id for h in handles]


def test_rescue_survives_damaged_histories_and_rescues_them_too(queue: JobQueue) -> None:
    """Damaged errors values never stop a rescue pass: every lost job is rescued, the raw text kept."""
    store = queue.store
    sound, bad_json, not_list = lost_jobs(queue, 3)
    damage(store, bad_json, "errors", "'[{oops'")
    damage(store, not_list, "errors", "'42'")
    rescued = {
        item["job_id"]: item["status"] for item in rescue(store, rescue_after=3.0, max_crashes=3, now=store.now())
    }
    assert rescued == {sound: "pending", bad_json: "pending", not_list: "pending"}
    for job_id, raw in ((bad_json, "[{oops"), (not_list, "42")):
        info = queue.handle(job_id).refresh()
        assert [e["type"] for e in info.errors] == ["DamagedHistory", "WorkerLost"]
        assert info.errors[0]["raw"] == raw


def test_a_running_job_with_no_worker_id_is_rescued(queue: JobQueue) -> None:
    """A running row whose worker_id is NULL belongs to nobody: it is rescued."""
    [job_id] = lost_jobs(queue, 1)
    damage(queue.store, job_id, "worker_id", "NULL")
    [item] = queue.worker.rescue_once()
    assert (item["job_id"], item["status"], item["worker"]) == (job_id, "pending", None)
    assert queue.handle(job_id).status() == "pending"


def test_a_row_whose_rescue_fails_is_isolated(queue: JobQueue) -> None:
    """A row the rescue update cannot write (a counter at its limit) is failed on its own; the others go back."""
    store = queue.store
    first, poisoned, last = lost_jobs(queue, 3)
    top = 2**31 - 1 if store.is_postgres else 2**63 - 1
    damage(store, poisoned, "crashes", str(top))
    damage(store, poisoned, "errors", "'not json'")
    rescued = {
        item["job_id"]: item["status"] for item in rescue(store, rescue_after=3.0, max_crashes=10**9, now=store.now())
    }
    assert rescued[first] == rescued[last] == "pending"
    info = queue.handle(poisoned).refresh()
    assert rescued[poisoned] == info.status
    assert info.status in ("pending", "failed") and info.errors[-1]["type"] == "WorkerLost"
    assert rescue(store, rescue_after=3.0, max_crashes=10**9, now=store.now()) == []


def test_a_damaged_run_at_does_not_stop_rescue_or_claims(queue: JobQueue) -> None:
    """A pending row with run_at out of range sits beside lost jobs: they are rescued and then claimed."""
    store = queue.store
    odd = AddOne.perform_later(n=1)
    damage(store, odd.id, "run_at", "1e300")
    lost = lost_jobs(queue, 2)
    store.register_worker("worker-b", host="host", pid=os.getpid(), queues=None, concurrency=4)
    assert sorted(item["job_id"] for item in rescue(store, rescue_after=3.0, max_crashes=3, now=store.now())) == sorted(
        lost
    )
    claimed = store.claim(
        worker="worker-b", limit=10, names=["tests.add_one", "tests.flaky"], queues=None, now=store.now()
    )
    assert sorted(c.id for c in claimed) == sorted(lost)
    assert odd.refresh().damaged == ["run_at: out of range (1e+300)"]

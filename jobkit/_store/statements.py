"""The SQL both databases run alike, built once per dialect from that dialect's clock and lock SQL.

:class:`Statements` is the base of every :class:`~jobkit._store.dialect.Dialect`: its
``__init__`` writes out each portable statement with the subclass's ``now``, ``db_now``,
``beat``, ``same_worker`` and ``for_update`` fragments, and its builders assemble the
statements whose filters vary per call. States, requests and transition kinds come from
:mod:`jobkit._vocabulary`, interpolated as the very text stored; column lists from
:mod:`jobkit._store.records` by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa

from jobkit._store.records import JOB_COLUMNS, WORKER_COLUMNS
from jobkit._store.schema import IS_FINISHED, IS_PENDING, IS_RUNNING, IS_SCHEDULED, IS_STAGED, TERMINAL_SQL
from jobkit._store.unique_sql import YIELD_KEY, UniqueStatements, unique_statements
from jobkit._vocabulary import JobState, Request, TransitionKind

K = TransitionKind
PENDING, RUNNING, PAUSED = (f"'{s}'" for s in (JobState.PENDING, JobState.RUNNING, JobState.PAUSED))
FAILED, CANCELLED, COMPLETED = (f"'{s}'" for s in (JobState.FAILED, JobState.CANCELLED, JobState.COMPLETED))
ENDING = ", ".join(f"'{r}'" for r in Request if r.ends_job)
CANCELS = f"'{Request.CANCEL}', '{Request.KILL}'"

#: Fenced-write kinds that can end a job ``failed`` only through a standing discard request
#: (the store then appends the Discard entry).
FAILS_ONLY_BY_DISCARD = frozenset({K.RETRY, K.CANCEL, K.RELEASE, K.SNOOZE, K.PAUSE, K.RESCUE, K.RELEASE_CRASH})

Statement = tuple[sa.TextClause, dict[str, Any]]


def statement_text(sql: str, *expanding: str) -> sa.TextClause:
    """A statement; ``expanding`` names list parameters (``IN :names``) rendered per call."""
    clause = sa.text(sql)
    return clause.bindparams(*(sa.bindparam(name, expanding=True) for name in expanding)) if expanding else clause


def where(**equal: Any) -> tuple[str, dict[str, Any]]:
    """A WHERE clause of ``column = :column`` terms for the given non-None values, and their bind values."""
    given = {column: value for column, value in equal.items() if value is not None}
    return ("WHERE " + " AND ".join(f"{column} = :{column}" for column in given)) if given else "", given


class Statements:
    """Every statement written the same on SQLite and PostgreSQL; a dialect fills in the fragments."""

    #: The database's clock, in epoch seconds.
    db_now: ClassVar[str]

    #: "Now" in statements that bind ``:now``: the caller's time, or the server's where it has one.
    now: ClassVar[str]

    #: "Now" in a heartbeat: the server's clock, or this process's (bound as ``:beat``).
    beat: ClassVar[str]

    #: "The row's worker is :worker", NULL included.
    same_worker: ClassVar[str]

    #: Suffix that locks the selected row until the transaction ends ("" where writers are serialised).
    for_update: ClassVar[str]

    def __init__(self) -> None:
        now = self.now
        ended_at = f"finished_at = CASE WHEN cancel_requested IN ({ENDING}) THEN {now} ELSE finished_at END"
        # Every write that would put a job back (retry, snooze, release, rescue) or hold it (pause)
        # ends it instead when the operator asked for that (cancel/kill: cancelled, discard: failed);
        # a standing pause turns a requeue into paused. All SET expressions see the row as it was,
        # so each CASE reads the request that the same statement clears.
        ended = (
            f"WHEN cancel_requested IN ({CANCELS}) THEN {CANCELLED} "
            f"WHEN cancel_requested = '{Request.DISCARD}' THEN {FAILED}"
        )

        def requeue(normal: str) -> str:
            return f"status = CASE {ended} WHEN cancel_requested = '{Request.PAUSE}' THEN {PAUSED} ELSE {normal} END"

        # A job put back is written for the scheduled index; the stager moves it to the claim index
        # when it is due, at the next claim (at once for a release or a rescue).
        back = f"worker_id = NULL, {ended_at}, updated_at = {now}, cancel_requested = NULL, staged = FALSE"
        sets = {
            K.RETRY: f"{requeue(PENDING)}, run_at = {now} + :delay, errors = :errors, {back}",
            K.FAIL: f"status = {FAILED}, errors = :errors, finished_at = {now}, updated_at = {now}, cancel_requested = NULL",
            K.CANCEL: f"status = CASE WHEN cancel_requested = '{Request.DISCARD}' THEN {FAILED} ELSE {CANCELLED} END, "
            f"errors = :errors, finished_at = {now}, updated_at = {now}, cancel_requested = NULL",
            # release and snooze give the attempt back: the job did not fail, it was interrupted or deferred.
            K.RELEASE: f"{requeue(PENDING)}, attempt = attempt - 1, run_at = {now} + :delay, {back}",
            K.SNOOZE: f"{requeue(PENDING)}, attempt = attempt - 1, run_at = {now} + :delay, {back}",
            K.PAUSE: f"{requeue(PAUSED)}, attempt = attempt - 1, {back}",
            K.PROGRESS: f"progress = :progress, updated_at = {now}",
            K.CHECKPOINT: f"checkpoint = :checkpoint, updated_at = {now}",
            # A rescued job: its worker is gone; the attempt stays spent and the crash is counted.
            K.RESCUE: f"{requeue(PENDING)}, run_at = {now}, errors = :errors, crashes = crashes + 1, {back}",
            K.RESCUE_FAIL: f"status = CASE WHEN cancel_requested IN ({CANCELS}) THEN {CANCELLED} ELSE {FAILED} END, "
            f"errors = :errors, finished_at = {now}, crashes = crashes + 1, updated_at = {now}, cancel_requested = NULL",
            # A job that outlived a shutdown's grace and its token: a crash, but the attempt is given back.
            K.RELEASE_CRASH: f"{requeue(PENDING)}, attempt = attempt - 1, run_at = {now}, errors = :errors, "
            f"crashes = crashes + 1, {back}",
        }
        #: The SET list of each fenced write (rescue builds its own WHERE around them).
        self.fenced_sets = sets
        #: Each fenced write: it takes only while (worker, lease) still holds the running job.
        self.fenced = {
            kind: sa.text(
                f"UPDATE jobkit_jobs SET {assignments} WHERE id = :id AND worker_id = :worker AND lease = :lease "
                f"AND {IS_RUNNING} RETURNING id, status"
            )
            for kind, assignments in sets.items()
        }
        self.progress = sa.text(
            "UPDATE jobkit_jobs SET progress = :progress, updated_at = :now "
            f"WHERE id = :id AND worker_id = :worker AND lease = :lease AND {IS_RUNNING} RETURNING id"
        )
        self.read_history = sa.text("SELECT errors, attempt FROM jobkit_jobs WHERE id = :id")
        self.write_history = sa.text(f"UPDATE jobkit_jobs SET errors = :errors, updated_at = {now} WHERE id = :id")
        self.select_now = sa.text(f"SELECT {self.db_now}")
        #: A new job's concurrency key, written in its enqueue's transaction (so no claim sees it without).
        self.set_concurrency_key = sa.text(
            "UPDATE jobkit_jobs SET concurrency_key = :key, concurrency_limit = :limit, concurrency_keys = :extra, "
            "concurrency_ordered = :ordered WHERE id = :id"
        )
        #: The running jobs holding a concurrency key (``why``).
        self.key_holders = sa.text(
            f"SELECT id FROM jobkit_jobs WHERE {IS_RUNNING} AND concurrency_key = :key ORDER BY id"
        )
        #: The unique enqueue path (unique_sql.py).
        self.unique: UniqueStatements = unique_statements(now, self.for_update)

        # -- reads
        columns = ", ".join(JOB_COLUMNS)
        self.job_columns = columns
        self.get_job = sa.text(f"SELECT {columns} FROM jobkit_jobs WHERE id = :id")
        self.status_of = sa.text("SELECT status FROM jobkit_jobs WHERE id = :id")
        # Rows written for later only (jobkit_jobs_scheduled); a staged row is due by the clock of the
        # process that wrote it, so another process's slower clock waits at most one poll for it.
        due_later = f"{IS_SCHEDULED} AND run_at > {now} AND name IN :names"
        self.next_run_at = {
            False: statement_text(f"SELECT MIN(run_at) FROM jobkit_jobs WHERE {due_later}", "names"),
            True: statement_text(
                f"SELECT MIN(run_at) FROM jobkit_jobs WHERE {due_later} AND queue IN :queues", "names", "queues"
            ),
        }
        self.stats_counts = sa.text(
            "SELECT status, queue, name, COUNT(*) FROM jobkit_jobs GROUP BY status, queue, name"
        )
        # Metrics' queue gauges, one statement a scrape: live rows only (finished ones are history,
        # not depth), and per queue the run time of the oldest row that is due and still waits.
        self.queue_gauges = sa.text(
            "SELECT queue, status, COUNT(*), "
            f"MIN(CASE WHEN {IS_PENDING} AND run_at <= :now THEN run_at END) "
            f"FROM jobkit_jobs WHERE NOT ({IS_FINISHED}) GROUP BY queue, status"
        )
        # Through the two pending indexes, never the whole table (a history of finished rows).
        self.oldest_due = sa.text(
            f"SELECT MIN(m) FROM (SELECT MIN(run_at) AS m FROM jobkit_jobs WHERE {IS_STAGED} AND run_at <= :now "
            f"UNION ALL SELECT MIN(run_at) FROM jobkit_jobs WHERE {IS_SCHEDULED} AND run_at <= :now) AS due"
        )
        # Per queue, for the dashboard: pending rows only, each half through its own partial index.
        self.oldest_due_by_queue = sa.text(
            "SELECT queue, MIN(m) FROM ("
            f"SELECT queue, MIN(run_at) AS m FROM jobkit_jobs WHERE {IS_STAGED} AND run_at <= :now GROUP BY queue "
            f"UNION ALL SELECT queue, MIN(run_at) FROM jobkit_jobs WHERE {IS_SCHEDULED} AND run_at <= :now "
            "GROUP BY queue) AS due GROUP BY queue"
        )
        # The window a filtered page examines: its lowest id and how many rows it holds (primary key only).
        self.page_window = {
            below: sa.text(
                "SELECT MIN(id), COUNT(*) FROM "
                f"(SELECT id FROM jobkit_jobs {'WHERE id < :before ' if below else ''}ORDER BY id DESC LIMIT :scan) w"
            )
            for below in (False, True)
        }

        # -- the dashboard's tables: per-minute counts (added to, never overwritten) and the audit log
        self.tally_minute = sa.text(
            "INSERT INTO jobkit_minute_stats (minute, queue, completed, failed) "
            "VALUES (:minute, :queue, :completed, :failed) ON CONFLICT (minute, queue) DO UPDATE SET "
            "completed = jobkit_minute_stats.completed + excluded.completed, "
            "failed = jobkit_minute_stats.failed + excluded.failed"
        )
        self.minute_counts = sa.text(
            "SELECT minute, queue, completed, failed FROM jobkit_minute_stats WHERE minute >= :since ORDER BY minute, queue"
        )
        self.prune_minutes = sa.text("DELETE FROM jobkit_minute_stats WHERE minute < :before")
        self.insert_audit = sa.text(
            "INSERT INTO jobkit_audit_log (at, actor, action, target, job_ids, outcome) "
            "VALUES (:at, :actor, :action, :target, :job_ids, :outcome)"
        )
        self.audit_page = {
            below: sa.text(
                "SELECT id, at, actor, action, target, job_ids, outcome FROM jobkit_audit_log "
                f"{'WHERE id < :before ' if below else ''}ORDER BY id DESC LIMIT :limit"
            )
            for below in (False, True)
        }

        # -- admin
        self.cancel_now = sa.text(
            f"UPDATE jobkit_jobs SET status = {CANCELLED}, finished_at = :now, updated_at = :now, worker_id = NULL "
            f"WHERE id = :id AND status IN ({PENDING}, {PAUSED}) RETURNING id"
        )
        ranked = sorted(Request, key=lambda r: r.rank)

        def weaker(request: Request) -> str:
            below = ", ".join(f"'{r}'" for r in ranked[: request.rank])
            return (
                f"(cancel_requested IS NULL OR cancel_requested IN ({below}))" if below else "cancel_requested IS NULL"
            )

        # A stronger request replaces a weaker one, never the other way (kill > discard > cancel > pause).
        self.request = {
            request: sa.text(
                f"UPDATE jobkit_jobs SET cancel_requested = :request, updated_at = {now} "
                f"WHERE id = :id AND {IS_RUNNING} AND {weaker(request)} RETURNING id"
            )
            for request in Request
        }
        self.request_seen = sa.text("SELECT status, cancel_requested FROM jobkit_jobs WHERE id = :id")
        self.pause_pending = sa.text(
            f"UPDATE jobkit_jobs SET status = {PAUSED}, updated_at = :now WHERE id = :id AND status = {PENDING} "
            "RETURNING id"
        )
        self.resume_paused = sa.text(
            f"UPDATE jobkit_jobs SET status = {PENDING}, staged = FALSE, run_at = {now}, updated_at = {now}, "
            f"{YIELD_KEY} WHERE id = :id AND status = {PAUSED} RETURNING id"
        )
        self.withdraw_pause = sa.text(
            f"UPDATE jobkit_jobs SET cancel_requested = NULL WHERE id = :id AND {IS_RUNNING} "
            f"AND cancel_requested = '{Request.PAUSE}' RETURNING id"
        )
        self.retry_job = sa.text(
            f"UPDATE jobkit_jobs SET status = {PENDING}, staged = FALSE, run_at = {now}, attempt = 0, crashes = 0, "
            "finished_at = NULL, result = NULL, worker_id = NULL, cancel_requested = NULL, "
            f"updated_at = {now}, {YIELD_KEY} WHERE id = :id AND status IN ({FAILED}, {CANCELLED}) RETURNING id"
        )
        self.discard_select = sa.text(
            "SELECT errors, attempt FROM jobkit_jobs "
            f"WHERE id = :id AND status IN ({PENDING}, {PAUSED}){self.for_update}"
        )
        self.discard_pending = sa.text(
            f"UPDATE jobkit_jobs SET status = {FAILED}, errors = :errors, finished_at = :now, updated_at = :now "
            f"WHERE id = :id AND status IN ({PENDING}, {PAUSED}) RETURNING id"
        )
        self.delete_job = sa.text(f"DELETE FROM jobkit_jobs WHERE id = :id AND status IN ({TERMINAL_SQL}) RETURNING id")
        self.resume_queue = sa.text("DELETE FROM jobkit_queue_pauses WHERE queue = :q RETURNING queue")
        self.paused_queues = sa.text("SELECT queue FROM jobkit_queue_pauses ORDER BY queue")

        # -- workers and maintenance
        self.register_worker = sa.text(
            "INSERT INTO jobkit_workers (id, host, pid, queues, concurrency, started_at, heartbeat_at, stuck, names) "
            f"VALUES (:id, :host, :pid, :queues, :concurrency, {self.beat}, {self.beat}, 0, :names)"
        )
        self.heartbeat = sa.text(
            f"UPDATE jobkit_workers SET heartbeat_at = {self.beat}, stuck = :stuck, pool = :pool "
            "WHERE id = :id AND stopped_at IS NULL "
            f"RETURNING (SELECT count(*) FROM jobkit_jobs WHERE worker_id = :id AND {IS_RUNNING})"
        )
        self.mark_stopped = sa.text(f"UPDATE jobkit_workers SET stopped_at = {self.db_now} WHERE id = :id")
        self.forget_stopped = sa.text(
            "DELETE FROM jobkit_workers WHERE id = :id AND NOT EXISTS "
            f"(SELECT 1 FROM jobkit_jobs WHERE worker_id = :id AND {IS_RUNNING})"
        )
        self.held_jobs = sa.text(
            f"SELECT id, lease, cancel_requested FROM jobkit_jobs WHERE worker_id = :w AND {IS_RUNNING}"
        )
        self.prune_jobs = sa.text(
            "DELETE FROM jobkit_jobs WHERE id IN "
            f"(SELECT id FROM jobkit_jobs WHERE {IS_FINISHED} AND finished_at < :before ORDER BY id LIMIT :limit)"
        )
        self.prune_workers = sa.text(
            f"DELETE FROM jobkit_workers WHERE (stopped_at IS NOT NULL OR heartbeat_at < {self.db_now} - 86400) "
            "AND NOT EXISTS (SELECT 1 FROM jobkit_jobs j WHERE j.worker_id = jobkit_workers.id "
            f"AND j.status = {RUNNING})"
        )
        self.list_workers = sa.text(
            f"SELECT {', '.join(WORKER_COLUMNS)}, "
            f"(stopped_at IS NULL AND heartbeat_at >= {self.db_now} - :after) AS alive "
            "FROM jobkit_workers ORDER BY started_at"
        )
        # ORDER BY +id: sort the few running rows found through jobkit_jobs_running; with a plain
        # ORDER BY id SQLite walks the whole table in id order instead (1,000,000 rows: 160 ms).
        self.running_jobs = sa.text(f"SELECT worker_id, id FROM jobkit_jobs WHERE {IS_RUNNING} ORDER BY +id")
        # Full rows of the running jobs, through the same partial index (the dashboard's running page).
        self.running_rows = sa.text(
            f"SELECT {self.job_columns} FROM jobkit_jobs WHERE {IS_RUNNING} ORDER BY +id DESC LIMIT :limit"
        )
        self.live_heartbeats = sa.text("SELECT id, heartbeat_at FROM jobkit_workers WHERE stopped_at IS NULL")

    # -- filters built per call ------------------------------------------------------------------

    def select_jobs(self, where: str) -> str:
        """The full-row select of the jobs matching ``where`` (SQL after WHERE, or "")."""
        return f"SELECT {self.job_columns} FROM jobkit_jobs {where}"

    def list_jobs(self, where: str) -> sa.TextClause:
        """The newest ``:limit`` jobs matching ``where``."""
        return sa.text(f"{self.select_jobs(where)} ORDER BY id DESC LIMIT :limit")

    def page_jobs(self, filters: Sequence[str], *, below: bool, windowed: bool) -> sa.TextClause:
        """One page of jobs, newest first: ``filters`` names the bound filters in use (see Queries.page_jobs).

        ``below``: only ids under ``:before``; ``windowed``: only ids from ``:floor`` up, the
        window a filtered page examines.
        """
        terms = ["id < :before"] if below else []
        terms += [self._page_filters[name] for name in filters]
        if windowed:
            terms.append("id >= :floor")
        where = f"WHERE {' AND '.join(terms)}" if terms else ""
        return statement_text(
            f"{self.select_jobs(where)} ORDER BY id DESC LIMIT :limit", *(["states"] if "states" in filters else [])
        )

    @property
    def _page_filters(self) -> dict[str, str]:
        text = " OR ".join(self.contains_text(column, "text") for column in ("name", "args", "errors"))
        return {
            "states": "status IN :states",
            "name": "name = :name",
            "queue": "queue = :queue",
            "worker": "worker_id = :worker",
            "since": "created_at >= :since",
            "until": "created_at < :until",
            # A cheap necessary condition (jobkit writes progress as compact JSON); the caller tests
            # the top-level "stage" exactly on the rows it lets through.
            "stage": "progress LIKE :stage ESCAPE '\\'",
            "text": f"({text})",
        }

    def clear(self, where: str) -> sa.TextClause:
        """Delete the jobs matching ``where``."""
        return sa.text(f"DELETE FROM jobkit_jobs {where}")

    def retry_failed(self, where: str) -> sa.TextClause:
        """Every job matching ``where`` back to pending with fresh retries."""
        now = self.now
        return sa.text(
            f"UPDATE jobkit_jobs SET status = {PENDING}, staged = FALSE, run_at = {now}, attempt = 0, crashes = 0, "
            "finished_at = NULL, "
            f"worker_id = NULL, cancel_requested = NULL, updated_at = {now}, {YIELD_KEY} {where}"
        )

    def contains_text(self, column: str, param: str) -> str:
        """``column`` contains the bound LIKE pattern ``param``, ignoring case (``\\`` escapes wildcards)."""
        return f"{column} LIKE :{param} ESCAPE '\\'"

    def rescue_sql(self, *, observed: bool, exclude: bool) -> RescueSQL:
        """The statements of one rescue pass; see :class:`RescueSQL`."""
        if observed:
            # The worker row is gone or stopped, or its heartbeat still holds the value the rescuer saw
            # unchanged for rescue_after (:seen; NULL when it saw no live row at all).
            lost = (
                "NOT EXISTS (SELECT 1 FROM jobkit_workers w WHERE w.id = jobkit_jobs.worker_id "
                "AND w.stopped_at IS NULL AND (CAST(:seen AS float) IS NULL OR w.heartbeat_at <> :seen))"
            )
        else:
            # The worker row is gone, stopped, or its heartbeat is older than :after by the database's
            # clock. A NULL worker_id matches no row, so such a running job counts as lost too.
            lost = (
                "NOT EXISTS (SELECT 1 FROM jobkit_workers w WHERE w.id = jobkit_jobs.worker_id "
                f"AND w.stopped_at IS NULL AND w.heartbeat_at >= {self.db_now} - :after)"
            )
        not_mine = " AND (worker_id IS NULL OR worker_id <> :exclude)" if exclude else ""
        fence = (
            f"WHERE id = :id AND {IS_RUNNING} AND lease = :lease AND {self.same_worker} AND {lost} RETURNING id, status"
        )
        columns = "id, worker_id, lease, attempt, max_retries, crashes, errors"
        if observed:
            candidates = statement_text(
                f"SELECT {columns} FROM jobkit_jobs WHERE {IS_RUNNING} AND (worker_id IS NULL OR worker_id NOT IN :live)"
                f"{not_mine} ORDER BY +id LIMIT :limit",  # +id: through jobkit_jobs_running (see running_jobs)
                "live",
            )
        else:
            candidates = sa.text(
                f"SELECT {columns} FROM jobkit_jobs WHERE {IS_RUNNING} AND {lost}{not_mine} ORDER BY +id LIMIT :limit"
            )
        now = self.now
        return RescueSQL(
            candidates=candidates,
            updates={
                kind: sa.text(f"UPDATE jobkit_jobs SET {self.fenced_sets[kind]} {fence}")
                for kind in (K.RESCUE, K.RESCUE_FAIL)
            },
            minimal=sa.text(
                f"UPDATE jobkit_jobs SET status = {FAILED}, errors = :errors, worker_id = NULL, finished_at = {now}, "
                f"updated_at = {now}, cancel_requested = NULL {fence}"
            ),
        )


@dataclass(frozen=True, slots=True)
class RescueSQL:
    """A rescue pass's statements: find the lost running jobs, then end or requeue each under its fence."""

    candidates: sa.TextClause
    updates: dict[TransitionKind, sa.TextClause]
    #: When even the planned write is refused as data: fail the job with the reason alone.
    minimal: sa.TextClause

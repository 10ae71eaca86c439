"""The tables, as SQLAlchemy Core metadata; the migrations create exactly these.

Times are stored as epoch seconds in double-precision columns: they compare
and index the same way on SQLite and PostgreSQL, and cost no parsing on the
hot path. JSON payloads are stored as text written and read by jobkit itself.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobkit._vocabulary import JobState

metadata = sa.MetaData()

Epoch = sa.Float(precision=53)
JobId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: SQL for "the row is pending", "running" and "finished" (terminal), as the partial indexes and statements say it.
IS_PENDING = f"status = '{JobState.PENDING}'"
#: A pending row the claim index holds: it was due when it was last written, or the stager found it due.
IS_STAGED = f"{IS_PENDING} AND staged"
#: A pending row that was written for later: only the stager and the next-run lookup read these.
IS_SCHEDULED = f"{IS_PENDING} AND NOT staged"
IS_RUNNING = f"status = '{JobState.RUNNING}'"
TERMINAL_SQL = ", ".join(f"'{state}'" for state in JobState if state.terminal)
IS_FINISHED = f"status IN ({TERMINAL_SQL})"

#: Each state's bit in ``unique_states`` (migration 0006). Stored in rows and the unique index's
#: predicate, so a state's bit never changes once given.
STATE_BITS: dict[JobState, int] = {
    JobState.PENDING: 1,
    JobState.RUNNING: 2,
    JobState.COMPLETED: 4,
    JobState.FAILED: 8,
    JobState.CANCELLED: 16,
    JobState.PAUSED: 32,
}
_STATE_BIT = "CASE status " + " ".join(f"WHEN '{s}' THEN {b}" for s, b in STATE_BITS.items()) + " ELSE 0 END"
#: A row whose unique key is live: it has one and its state is one of its job's ``unique_states``.
#: The unique index holds exactly these rows, so a job that leaves its unique states frees its key
#: by the same write that changes its state, on both databases, with nothing to clear afterwards.
UNIQUE_LIVE = f"unique_key IS NOT NULL AND (unique_states & ({_STATE_BIT})) <> 0"
#: Pending and running rows of jobs with a concurrency key (migration 0006): only the keyed claim reads them.
IS_KEYED_PENDING = f"{IS_PENDING} AND concurrency_key IS NOT NULL"
IS_KEYED_RUNNING = f"{IS_RUNNING} AND concurrency_key IS NOT NULL"
#: Unfinished rows of jobs with an ordered key (migration 0009).
IS_ORDERED_UNFINISHED = (
    f"concurrency_ordered AND status IN ('{JobState.PENDING}', '{JobState.RUNNING}', '{JobState.PAUSED}')"
)

jobs = sa.Table(
    "jobkit_jobs",
    metadata,
    sa.Column("id", JobId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False, server_default=JobState.PENDING.value),
    sa.Column("args", sa.Text, nullable=False),
    sa.Column("run_at", Epoch, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    # attempt counts claims that spent an attempt; (worker_id, attempt) is the lease.
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("worker_id", sa.String(64), nullable=True),
    sa.Column("started_at", Epoch, nullable=True),
    sa.Column("finished_at", Epoch, nullable=True),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("errors", sa.Text, nullable=True),
    sa.Column("progress", sa.Text, nullable=True),
    sa.Column("checkpoint", sa.Text, nullable=True),
    # A Request (pause, cancel, discard, kill) made by another process, delivered by the worker's cancel check.
    sa.Column("cancel_requested", sa.String(16), nullable=True),
    sa.Column("crashes", sa.Integer, nullable=False, server_default="0"),
    # Bumped by every claim and never decremented: (worker_id, lease) fences every later write,
    # even after a release gave the attempt back.
    sa.Column("lease", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", Epoch, nullable=True),
    # Which of the two pending indexes holds the row (migration 0004): true when the row was due as
    # it was written, or once the stager (run before every claim) found it due. It is only ever a
    # hint: the claim still checks run_at, and a due row not yet staged waits one claim at most.
    # Without it, the claim index also held every job scheduled for later, and a claim finding
    # fewer due jobs than it asked for walked all of them (100,000 future rows: 8 ms a claim).
    sa.Column("staged", sa.Boolean(create_constraint=False), nullable=False, server_default=sa.false()),
    # Unique jobs (migration 0006): a digest of the job's name, queue and chosen arguments, and the
    # states (STATE_BITS) in which it keeps other jobs with the same key out. NULL for other jobs,
    # and set NULL when a unique_for window has passed, so the key can be used again.
    sa.Column("unique_key", sa.String(64), nullable=True),
    sa.Column("unique_states", sa.Integer, nullable=True),
    # Concurrency keys (migration 0006): at most concurrency_limit running rows share a key, counted
    # by the keyed claim; NULL for other jobs, which the plain claim alone takes.
    sa.Column("concurrency_key", sa.String(200), nullable=True),
    sa.Column("concurrency_limit", sa.Integer, nullable=True),
    # Several keys per job (migration 0009): every key with its limit, as JSON (the first is also in
    # concurrency_key); TRUE in concurrency_ordered for a key whose jobs run strictly in enqueue order.
    # Only the gated claim (rates.py) reads them.
    sa.Column("concurrency_keys", sa.Text, nullable=True),
    sa.Column("concurrency_ordered", sa.Boolean(create_constraint=False), nullable=True),
    # Rate limits (migration 0009): the window a start of this job counts in (jobkit_rate_starts)
    # and that window's spec, written at enqueue; NULL for other jobs, which never pay for them.
    sa.Column("rate_key", sa.String(200), nullable=True),
    sa.Column("rate_limit", sa.Integer, nullable=True),
    sa.Column("rate_period", Epoch, nullable=True),
    sa.Column("rate_weight", sa.Integer, nullable=True),
    # The enqueuing process's trace context (migration 0010): W3C trace-context headers as JSON
    # ({"traceparent": ..., "tracestate": ...}), written when tracing is on, so every attempt's
    # span links to the span that enqueued the job. NULL when nothing traced the enqueue.
    sa.Column("trace_context", sa.Text, nullable=True),
    sa.Index(
        # The keyed claim's candidates in claim order (keys_sql.py).
        "jobkit_jobs_keyed_pending",
        "priority",
        "run_at",
        "id",
        sqlite_where=sa.text(IS_KEYED_PENDING),
        postgresql_where=sa.text(IS_KEYED_PENDING),
    ),
    sa.Index(
        # What holds each key now: the running rows the keyed claim counts.
        "jobkit_jobs_keyed_running",
        "concurrency_key",
        sqlite_where=sa.text(IS_KEYED_RUNNING),
        postgresql_where=sa.text(IS_KEYED_RUNNING),
    ),
    sa.Index(
        # The unfinished jobs of each ordered key, oldest first: only the oldest may start.
        "jobkit_jobs_ordered",
        "concurrency_key",
        "id",
        sqlite_where=sa.text(IS_ORDERED_UNFINISHED),
        postgresql_where=sa.text(IS_ORDERED_UNFINISHED),
    ),
    sa.Index(
        # At most one live row per key, whichever process inserts it: concurrent inserts conflict here.
        "jobkit_jobs_unique",
        "unique_key",
        unique=True,
        sqlite_where=sa.text(UNIQUE_LIVE),
        postgresql_where=sa.text(UNIQUE_LIVE),
    ),
    sa.Index(
        # Matches the claim query exactly: due pending rows in priority, run_at, id order.
        "jobkit_jobs_claim",
        "priority",
        "run_at",
        "id",
        sqlite_where=sa.text(IS_STAGED),
        postgresql_where=sa.text(IS_STAGED),
    ),
    sa.Index(
        # Rows written for later, in the order they fall due: the stager and next_run_at read its head.
        "jobkit_jobs_scheduled",
        "run_at",
        sqlite_where=sa.text(IS_SCHEDULED),
        postgresql_where=sa.text(IS_SCHEDULED),
    ),
    sa.Index(
        "jobkit_jobs_running",
        "worker_id",
        sqlite_where=sa.text(IS_RUNNING),
        postgresql_where=sa.text(IS_RUNNING),
    ),
    # Finished rows only (migration 0002): pruning and admin filters use these, and the claim
    # cannot be planned through them instead of jobkit_jobs_claim.
    sa.Index(
        "jobkit_jobs_finished",
        "status",
        "finished_at",
        sqlite_where=sa.text(IS_FINISHED),
        postgresql_where=sa.text(IS_FINISHED),
    ),
    sa.Index(
        "jobkit_jobs_name_finished",
        "name",
        "status",
        sqlite_where=sa.text(IS_FINISHED),
        postgresql_where=sa.text(IS_FINISHED),
    ),
    sqlite_autoincrement=True,
)

workers = sa.Table(
    "jobkit_workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", sa.Text, nullable=True),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("started_at", Epoch, nullable=False),
    # PostgreSQL: the server's clock. SQLite: the worker process's own clock, so rescuers judge it
    # by watching it change (see _store/liveness.py), never by comparing it with their own.
    sa.Column("heartbeat_at", Epoch, nullable=False),
    sa.Column("stopped_at", Epoch, nullable=True),
    # Executor threads abandoned by their job (migration 0003), as of the last heartbeat.
    sa.Column("stuck", sa.Integer, nullable=False, server_default="0"),
    # The job types the worker runs, a JSON array (migration 0006): why a pending job waits.
    sa.Column("names", sa.Text, nullable=True),
    # The worker's pool and its child processes as JSON (migration 0008), as of the last heartbeat:
    # {"pool": "threads" | "processes", "children": [{"pid", "job", "tasks", "rss"}, ...]}.
    sa.Column("pool", sa.Text, nullable=True),
)

queue_pauses = sa.Table(
    "jobkit_queue_pauses",
    metadata,
    sa.Column("queue", sa.String(100), primary_key=True),
    sa.Column("paused_at", Epoch, nullable=False),
)

# Finished jobs per minute and queue (migration 0011), written by the workers' completers with
# each batch they persist: the dashboard's throughput charts read a few hundred of these rows
# instead of counting the jobs table.
minute_stats = sa.Table(
    "jobkit_minute_stats",
    metadata,
    # The minute's start, in epoch seconds (a multiple of 60).
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("queue", sa.String(100), primary_key=True),
    sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
)

# What operators did from the dashboard (migration 0011): who, what, when, to which jobs.
audit_log = sa.Table(
    "jobkit_audit_log",
    metadata,
    sa.Column("id", JobId, primary_key=True, autoincrement=True),
    sa.Column("at", Epoch, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    # The queue or filter acted on, as text (empty for actions on listed jobs only).
    sa.Column("target", sa.Text, nullable=False, server_default=""),
    # The ids of the jobs acted on, as a JSON array.
    sa.Column("job_ids", sa.Text, nullable=False, server_default="[]"),
    # What came of it ("3 retried", "cancelling", …).
    sa.Column("outcome", sa.Text, nullable=False, server_default=""),
    sa.Index("jobkit_audit_log_at", "at"),
    sqlite_autoincrement=True,
)

# Recurring jobs (migration 0005). A schedule is keyed by a stable name (the job name for schedules
# declared with @job(cron=...), the caller's key for queue.schedule); its policies are stored as
# text and validated above the store. last_fire_at is the newest fire time decided (fired or
# skipped), compared-and-set by every scheduler so two schedulers never decide the same tick twice.
schedules = sa.Table(
    "jobkit_schedules",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("args", sa.Text, nullable=False),
    sa.Column("queue", sa.String(100), nullable=True),
    sa.Column("catchup", sa.String(16), nullable=False, server_default="latest"),
    sa.Column("catchup_window", Epoch, nullable=True),
    sa.Column("overlap", sa.String(16), nullable=False, server_default="allow"),
    sa.Column("paused", sa.Boolean(create_constraint=False), nullable=False, server_default=sa.false()),
    # "code" (declared with @job, upserted at worker start) or "runtime" (queue.schedule).
    sa.Column("source", sa.String(16), nullable=False, server_default="code"),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("last_fire_at", Epoch, nullable=True),
    sa.Column("last_job_id", JobId, nullable=True),
    # Fire times passed over by the catch-up policy or the overlap policy.
    sa.Column("missed", sa.Integer, nullable=False, server_default="0"),
)

# One row per decided fire time: the primary key is what makes a fire happen once, whichever
# scheduler gets there first. Kept apart from the jobs (with its own retention) so pruning a
# finished job never reopens its fire time.
cron_fires = sa.Table(
    "jobkit_cron_fires",
    metadata,
    sa.Column("schedule_key", sa.String(200), primary_key=True),
    sa.Column("fire_at", Epoch, primary_key=True),
    sa.Column("job_id", JobId, nullable=True),
    # "enqueued", "skipped" (overlap) or "manual" (jobkit cron run).
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Index("jobkit_cron_fires_created", "created_at"),
)


rate_starts = sa.Table(
    # Every start that counts against a rate limit (migration 0009): a job's claim, or a consume()
    # by non-job code. A start counts in its window until expires_at (started_at + the period), so
    # a window's use is the sum of the weights not yet expired; expired rows are deleted by the
    # next claim that reads the window, and by the maintenance prune for windows no claim reads.
    "jobkit_rate_starts",
    metadata,
    sa.Column("id", JobId, primary_key=True, autoincrement=True),
    sa.Column("rate_key", sa.String(200), nullable=False),
    sa.Column("started_at", Epoch, nullable=False),
    sa.Column("expires_at", Epoch, nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
    # The attempt that started (NULL for consume()): a snooze gives its start back.
    sa.Column("job_id", JobId, nullable=True),
    sa.Column("lease", sa.Integer, nullable=True),
    sa.Index("jobkit_rate_starts_window", "rate_key", "expires_at"),
    sa.Index("jobkit_rate_starts_expiry", "expires_at"),
    sa.Index("jobkit_rate_starts_job", "job_id"),
)

"""The store: every SQL statement jobkit runs, for SQLite and PostgreSQL."""

from jobkit._store.diagnosis import is_missing_schema
from jobkit._store.engine import is_transient
from jobkit._store.preflight import PREFLIGHT_TIMEOUT, check_database, display_url
from jobkit._store.records import ClaimedJob, JobRecord, NewJob, WorkerRecord
from jobkit._store.store import LEASE_KINDS, Store, Transition

__all__ = [
    "LEASE_KINDS",
    "PREFLIGHT_TIMEOUT",
    "ClaimedJob",
    "JobRecord",
    "NewJob",
    "Store",
    "Transition",
    "WorkerRecord",
    "check_database",
    "display_url",
    "is_missing_schema",
    "is_transient",
]

"""The store: every SQL statement jobkit runs, for SQLite and PostgreSQL."""

from jobkit._store.records import ClaimedJob, JobRecord, NewJob, WorkerRecord
from jobkit._store.store import LEASE_KINDS, Store, Transition

__all__ = ["LEASE_KINDS", "ClaimedJob", "JobRecord", "NewJob", "Store", "Transition", "WorkerRecord"]
from jobkit._store.preflight import PREFLIGHT_TIMEOUT, check_database, display_url

__all__ += ["PREFLIGHT_TIMEOUT", "check_database", "display_url"]

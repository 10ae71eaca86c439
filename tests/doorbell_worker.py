"""A worker process that hears other processes only through SQLite's doorbells (for tests/integration/test_notify.py).

``python -m tests.doorbell_worker URL``: a worker for ``tests.jobs`` whose fallback poll and
data_version poll are an hour apart, so a job enqueued elsewhere while it is idle starts only
if the enqueuing process rang its doorbell. Prints ``listening`` once the doorbell is bound,
and stops when its standard input closes.
"""

from __future__ import annotations

import sys

import jobkit
import tests.jobs  # noqa: F401  (registers the job types)
from jobkit._store import listen_sqlite


def main() -> None:
    listen_sqlite.SQLITE_POLL_INTERVAL = 3600.0
    queue = jobkit.JobQueue(database_url=sys.argv[1], poll_interval=3600, concurrency=2)
    queue.start()
    if not queue._notifier.listening.wait(30):
        raise SystemExit("the doorbell never came up")
    print("listening", flush=True)
    sys.stdin.read()
    queue.close()


if __name__ == "__main__":
    main()

"""Health endpoints for a worker process: ``/healthz`` (liveness) and ``/readyz`` (readiness).

Standard library only. ``jobkit worker --health-port N`` serves them; in-process::

    from jobkit.contrib.health import serve_health

    server = serve_health(queue, 8081)     # after queue.start(); server.close() at shutdown

- ``/healthz`` answers 200 while the process works: the worker is started, has not stopped on
  its own, and its claim loop came round within ``stale_after`` seconds (it sleeps at most one
  poll interval between turns, so a loop stuck in a call answers 503 and an orchestrator can
  restart the process).
- ``/readyz`` answers 200 while the worker may take jobs: registered, its lease held (not
  fenced), and its last heartbeat reached the database. Neither endpoint queries the database
  itself: the heartbeat already does, so probing often costs nothing.

Both answer a JSON body with the checks, so ``curl`` shows why a probe fails.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobkit._queue import JobQueue
    from jobkit._runtime.worker import WorkerHealth


def default_stale_after(poll_interval: float) -> float:
    """How long the claim loop may go without turning before ``/healthz`` fails: three polls and some slack."""
    return 3 * poll_interval + 10.0


def report(health: WorkerHealth, stale_after: float) -> dict[str, Any]:
    """The body both endpoints answer (``live`` and ``ready`` say which probe passes)."""
    return {
        "worker": health.worker_id,
        "live": health.live(stale_after),
        "ready": health.ready,
        "checks": {
            "started": health.started,
            "claim_loop_turned_seconds_ago": round(health.turned_ago, 3),
            "stale_after": stale_after,
            "registered": health.registered,
            "fenced": health.fenced,
            "database_reachable": health.database_reachable,
            "fatal_reason": health.fatal_reason,
            "running": health.running,
        },
    }


class HealthServer:
    """Serves ``/healthz`` and ``/readyz`` for ``queue``'s worker from a daemon thread; ``close()`` stops it."""

    def __init__(self, queue: JobQueue, port: int, addr: str = "0.0.0.0", stale_after: float | None = None) -> None:
        self.queue = queue
        # The worker of this moment: probing after a stop must not make the queue a fresh one.
        self.worker = queue.worker
        poll = queue.settings.poll_interval
        self.stale_after = default_stale_after(poll) if stale_after is None else stale_after
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path not in ("/healthz", "/readyz"):
                    self._answer(404, {"error": f"no such endpoint {path}; try /healthz or /readyz"})
                    return
                body = owner.body()
                passed = body["live"] if path == "/healthz" else body["ready"]
                self._answer(200 if passed else 503, {"status": "ok" if passed else "failing", **body})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the worker's log

        self.server = ThreadingHTTPServer((addr, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="jobkit-health", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port served (the one picked when 0 was asked for)."""
        return int(self.server.server_address[1])

    def body(self) -> dict[str, Any]:
        """The current report of the queue's worker."""
        return report(self.worker.health(), self.stale_after)

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()


def serve_health(queue: JobQueue, port: int, addr: str = "0.0.0.0", stale_after: float | None = None) -> HealthServer:
    """Serve ``/healthz`` and ``/readyz`` for ``queue``'s worker on ``addr:port`` (0: a free port)."""
    return HealthServer(queue, port, addr, stale_after)


__all__ = ["HealthServer", "default_stale_after", "report", "serve_health"]

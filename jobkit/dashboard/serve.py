"""Serving the dashboard standalone with uvicorn, its event streams ended as soon as the server is asked to stop.

A stopping server waits for its open requests, and an event stream never ends by itself: without
this, SIGINT or SIGTERM would wait for every browser to go away.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from starlette.applications import Starlette

from jobkit.dashboard.app import stop_streams

#: Seconds a stopping server still gives open requests before it closes them.
GRACE = 2


class _Server(uvicorn.Server):
    """uvicorn's server, ending the dashboard's event streams first when it is asked to stop."""

    def __init__(self, config: uvicorn.Config, web: Starlette) -> None:
        super().__init__(config)
        self.web = web

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        stop_streams(self.web)
        super().handle_exit(sig, frame)
        # uvicorn raises the signal again once it has stopped; a requested stop is a clean exit (status 0)
        # here, as for ``jobkit worker``.
        self._captured_signals.clear()


def serve(web: Starlette, *, host: str, port: int) -> None:
    """Serve a dashboard made by :func:`jobkit.dashboard.app` until SIGINT or SIGTERM."""
    config = uvicorn.Config(web, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE)
    _Server(config, web).run()

"""Running a worker in the foreground until a process signal: the first SIGINT/SIGTERM drains, a second hurries.

Used by ``JobQueue.run`` (and through it ``jobkit worker``). The handlers are installed
before the worker starts, so a signal is honoured at every moment, also while the worker is
still registering; the previous handlers are restored on the way out.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from jobkit._runtime.worker import Worker

log = logging.getLogger("jobkit")

#: Seconds between two looks at the start-up, the signals and the worker's fatal flag.
WATCH_INTERVAL = 0.1


def serve(worker: Worker, start: Callable[[], None], stop: Callable[[float | None], None]) -> int:
    """Start the worker, wait for a signal or for it to stop on its own, drain it; returns an exit status.

    0 after a signal; the worker's ``exit_code`` (2, 4) when it decided to stop on its own.
    ``start`` and ``stop(grace)`` are the facade's (they also keep its worker reference in step;
    ``grace`` None: the worker's ``shutdown_grace``).
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # This runs in the main thread between two bytecodes, perhaps inside a lock the main
        # thread holds: it only records the signal, and sets an event the main thread never
        # waits on, so it cannot deadlock. Logging and stopping happen in the loop below.
        received.append(signum)
        if len(received) > 1:
            worker.hurry()

    failure: list[BaseException] = []

    def start_up() -> None:
        try:
            start()
        except BaseException as exc:  # re-raised in the calling thread below
            failure.append(exc)

    fatal = worker.fatal  # set by the worker when it decides to stop on its own
    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
        # Registration waits for the database for as long as it takes; the main thread stays
        # free meanwhile, so a signal can end the start-up as well as the run.
        starter = threading.Thread(target=start_up, name="jobkit-start", daemon=True)
        starter.start()
        while not received and not failure and not fatal.wait(WATCH_INTERVAL):
            pass
        if failure:
            stop(0.0)
            raise failure[0]
        status = 0
        if received and not fatal.is_set():
            log.info(
                "received %s; draining (grace %.0fs)",
                signal.Signals(received[0]).name,
                worker.settings.shutdown_grace,
            )
        else:
            status = worker.exit_code or 1
            log.error("worker stopping on its own: %s", worker.fatal_reason or "no reason given")
        if starter.is_alive():
            # Still registering: make the registration give up, then stop what start() began.
            worker.request_stop()
            starter.join(timeout=2.0)
        if starter.is_alive():
            # Blocked in a database call that retries on its own: the producer has not started, so
            # nothing was claimed and there is nothing to drain. Stopping now would race with start().
            log.warning("start-up is still waiting for the database; stopping without waiting for it")
            return status
        stop(None)
        return status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

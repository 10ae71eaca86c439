"""The child side of the process pool: a long-lived process that runs the jobs its parent sends.

Started by :mod:`jobkit._runtime.procpool` as ``python -c "...main(Connection(FD))"`` (a fresh
interpreter, as multiprocessing's ``spawn`` makes, never a fork of the threaded worker, and
without re-running the parent's ``__main__``). It reads its :class:`ChildConfig` as the first
message on the pipe (the parent's ``sys.path`` among it), imports the app's job modules once, then runs one job at a time with the
same :func:`~jobkit._runtime.executor.prepare` / :func:`~jobkit._runtime.executor.run_sync` as a
thread. Everything crosses the pipe as JSON (see :mod:`jobkit._runtime.wire`): the job's row in,
progress, checkpoints, log records and the outcome out, cancel requests in. The child never
opens a database connection: the parent keeps the lease, the heartbeat and every write.

It dies with its parent twice over: ``PR_SET_PDEATHSIG`` (Linux) kills it when the parent goes,
and the reader thread exits the process when the pipe reaches end of file.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import logging
import os
import queue
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from jobkit._cancel import CancelToken
from jobkit._payload import dumps
from jobkit._registry import lookup
from jobkit._runtime import wire
from jobkit._runtime.executor import prepare, run_sync
from jobkit._runtime.outcome import Failed, Outcome, error_entry
from jobkit._store import ClaimedJob

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """What a child needs to know at start: the app's modules, payload limits and log levels."""

    modules: tuple[str, ...]
    max_payload_depth: int
    max_payload_bytes: int
    log_levels: tuple[tuple[str, int], ...] = ()
    sys_path: tuple[str, ...] = ()
    parent_pid: int = 0

    def to_json(self) -> dict[str, Any]:
        """The config as the first message on the pipe."""
        return {"op": "config", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChildConfig:
        """The config the parent sent."""
        return cls(
            modules=tuple(data["modules"]),
            max_payload_depth=int(data["max_payload_depth"]),
            max_payload_bytes=int(data["max_payload_bytes"]),
            log_levels=tuple((str(name), int(level)) for name, level in data["log_levels"]),
            sys_path=tuple(data["sys_path"]),
            parent_pid=int(data["parent_pid"]),
        )


class _Pipe:
    """The child's end of the pipe: JSON messages out from any thread, one at a time."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = wire.encode(message)
        with self._lock:
            self.conn.send_bytes(data)


class _PipeReporter:
    """The Reporter a job in a child writes through: each report becomes a message to the parent.

    Data is serialised here, in the job's own thread, so that data which is not JSON fails the
    call that passed it, exactly as in a thread; the parent's reporter coalesces and writes.
    """

    def __init__(self, pipe: _Pipe, job_id: int, dump: Any) -> None:
        self.pipe = pipe
        self.job_id = job_id
        self.dump = dump

    def progress(self, percent: float, stage: str | None, message: str | None, data: dict[str, Any]) -> None:
        self.dump(data)
        self.pipe.send(
            {"op": "progress", "job": self.job_id, "percent": percent, "stage": stage, "message": message, "data": data}
        )

    def checkpoint(self, stage: str, data: Any) -> None:
        self.dump(data)
        self.pipe.send({"op": "checkpoint", "job": self.job_id, "stage": stage, "data": data})


class _LogForwarder(logging.Handler):
    """Sends every log record of the child to the parent, which logs it under the same logger name."""

    def __init__(self, pipe: _Pipe) -> None:
        super().__init__()
        self.pipe = pipe

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.pipe.send({"op": "log", "name": record.name, "level": record.levelno, "message": text})
        except Exception:
            self.handleError(record)


class _Current:
    """The job running now, so that a cancel request for it reaches its token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.job_id: int | None = None
        self.token: CancelToken | None = None

    def set(self, job_id: int | None, token: CancelToken | None) -> None:
        with self._lock:
            self.job_id, self.token = job_id, token

    def cancel(self, job_id: int, reason: str) -> None:
        with self._lock:
            token = self.token if self.job_id == job_id else None
        if token is not None:
            token.cancel(reason)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the pipe's end of file still ends the child


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # No /proc: the peak is the best this platform tells (kilobytes on Linux and BSDs).
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(conn: Connection) -> None:
    """The child's whole life: import the app, then run jobs until told to stop or the pipe closes."""
    die_with_parent()
    try:
        config = ChildConfig.from_json(wire.decode(conn.recv_bytes()))
    except (EOFError, OSError):
        os._exit(0)
    if os.getppid() != config.parent_pid:
        os._exit(1)  # the parent died before the death signal was armed
    sys.path[:] = list(config.sys_path)
    # Ctrl-C reaches the whole process group: the parent drains, its children must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pipe = _Pipe(conn)
    _forward_logs(pipe, config.log_levels)
    for module in config.modules:
        try:
            importlib.import_module(module)
        except Exception:
            logging.getLogger("jobkit.worker").exception("child %s: could not import %s", os.getpid(), module)
    inbox: queue.SimpleQueue[tuple[dict[str, Any], CancelToken] | None] = queue.SimpleQueue()
    current = _Current()
    threading.Thread(target=_read, args=(conn, inbox, current), name="jobkit-child-reader", daemon=True).start()
    dump = partial(dumps, max_depth=config.max_payload_depth, max_bytes=config.max_payload_bytes)
    pipe.send({"op": "ready", "pid": os.getpid()})
    while True:
        item = inbox.get()
        if item is None:
            break
        message, token = item
        job_id = int(message["job"]["id"])
        outcome = _run(message, token, pipe, dump)
        current.set(None, None)
        try:
            data = wire.dump_outcome(outcome)
            pipe.send({"op": "done", "job": job_id, "outcome": data, "rss": resident_bytes()})
        except ValueError as exc:  # a snooze of NaN seconds, say: still an outcome, never a silent child
            at = _WorkerClock(message.get("now")).now()
            failed = Failed(error_entry(exc, int(message["job"]["attempt"]), at), retryable=False)
            pipe.send({"op": "done", "job": job_id, "outcome": wire.dump_outcome(failed), "rss": resident_bytes()})
    conn.close()


def _forward_logs(pipe: _Pipe, levels: tuple[tuple[str, int], ...]) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_LogForwarder(pipe))
    for name, level in levels:
        logging.getLogger(name or None).setLevel(level)


def _read(
    conn: Connection, inbox: queue.SimpleQueue[tuple[dict[str, Any], CancelToken] | None], current: _Current
) -> None:
    """The reader thread: jobs go to the main thread, cancel requests straight to the running job's token.

    A job's token is made here, as its message arrives, so that a cancel sent right behind it
    finds the token even before the main thread has started the job.
    """
    while True:
        try:
            message = wire.decode(conn.recv_bytes())
        except (EOFError, OSError):
            # The parent is gone (or closed our pipe): nothing can be reported any more, so end now,
            # whatever the job in the main thread is doing.
            os._exit(0)
        op = message.get("op")
        if op == "run":
            token = CancelToken()
            if message.get("reason"):
                token.cancel(str(message["reason"]))  # cancelled before it was sent
            current.set(int(message["job"]["id"]), token)
            inbox.put((message, token))
        elif op == "cancel":
            current.cancel(int(message["job"]), str(message["reason"]))
        elif op == "stop":
            inbox.put(None)
            return


class _WorkerClock:
    """The worker's clock as of the run message, moving on with this process's: error times match the worker's."""

    def __init__(self, worker_now: float | None) -> None:
        self.offset = 0.0 if worker_now is None else float(worker_now) - time.time()

    def now(self) -> float:
        return time.time() + self.offset


def _run(message: dict[str, Any], token: CancelToken, pipe: _Pipe, dump: Any) -> Outcome:
    clock = _WorkerClock(message.get("now"))
    job = ClaimedJob(**message["job"])
    try:
        job_type = lookup(job.name)
        if job_type is None and message.get("module"):
            importlib.import_module(str(message["module"]))
            job_type = lookup(job.name)
        if job_type is None:
            error = LookupError(f"no job type named {job.name!r} is registered in the child process")
            return Failed(error_entry(error, job.attempt, clock.now()), retryable=False)
        prepared = prepare(job, job_type, token, _PipeReporter(pipe, job.id, dump), clock)
        if isinstance(prepared, Failed):
            return prepared
        return run_sync(prepared, clock, dump)
    except Exception as exc:
        return Failed(error_entry(exc, job.attempt, clock.now()), retryable=True)

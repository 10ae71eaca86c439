"""CancelToken: one per running job, fired by timeout, cancel, pause or shutdown."""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobkit.errors import JobCancelledError


class CancelToken:
    """A cooperative cancellation flag handed to every running job.

    Example::

        for row in rows:
            self.cancel_token.raise_if_cancelled()
            handle(row)
    """

    __slots__ = ("_callbacks", "_event", "_lock", "_reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[str], None]] = []

    @property
    def cancelled(self) -> bool:
        """True once the token has been fired."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """Why the token fired: ``cancel``, ``timeout``, ``pause``, ``shutdown`` or ``lease_lost``."""
        return self._reason

    def cancel(self, reason: str = "cancel") -> bool:
        """Fire the token; returns False when it had already fired (first reason wins)."""
        with self._lock:
            if self._event.is_set():
                return False
            self._reason = reason
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(reason)
        return True

    def on_cancel(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when the token fires (at once if it already has)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
            reason = self._reason or "cancel"
        callback(reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the token fires or ``timeout`` passes; returns whether it fired."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~jobkit.errors.JobCancelledError` if the token has fired."""
        if self._event.is_set():
            raise JobCancelledError(self._reason)

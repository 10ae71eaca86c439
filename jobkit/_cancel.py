"""CancelToken: one per running job, fired by timeout, cancel, pause or shutdown."""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobkit._vocabulary import CancelReason
from jobkit.errors import JobCancelledError


class CancelToken:
    """A cooperative cancellation flag handed to every running job.

    Example::

        for row in rows:
            self.cancel_token.raise_if_cancelled()
            handle(row)
    """

    __slots__ = ("_callbacks", "_cancelled", "_event", "_reason")

    # One lock for every token: firing and subscribing are rare and short, and a lock (and an
    # Event) per token would be built for every job although most jobs are never cancelled.
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._cancelled = False
        self._reason: CancelReason | None = None
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[str], None]] | None = None

    @property
    def cancelled(self) -> bool:
        """True once the token has been fired."""
        return self._cancelled

    @property
    def reason(self) -> CancelReason | None:
        """Why the token fired (a :class:`CancelReason`: ``cancel``, ``timeout``, ``pause``, ``shutdown`` …)."""
        return self._reason

    def cancel(self, reason: str = CancelReason.CANCEL) -> bool:
        """Fire the token; returns False when it had already fired (first reason wins).

        ``reason`` must name a :class:`CancelReason`; any other text is a ValueError, so a typo
        can never turn into a plain cancel.
        """
        with self._lock:
            if self._cancelled:
                return False
            self._reason = CancelReason.parse(reason)
            self._cancelled = True
            if self._event is not None:
                self._event.set()
            callbacks = self._callbacks or []
            self._callbacks = None
        for callback in callbacks:
            callback(self._reason)
        return True

    def on_cancel(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when the token fires (at once if it already has)."""
        with self._lock:
            if not self._cancelled:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
            reason = self._reason or CancelReason.CANCEL
        callback(reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the token fires or ``timeout`` passes; returns whether it fired."""
        with self._lock:
            if self._cancelled:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~jobkit.errors.JobCancelledError` if the token has fired."""
        if self._cancelled:
            raise JobCancelledError(self._reason)

"""The held-jobs ledger: every job this worker holds (prefetched or in a slot) and the room left to claim.

The bottom of the runtime and pure bookkeeping: no thread, no database. Every change goes
through one condition, so a job is begun, withdrawn, ended or abandoned exactly once whichever
thread gets there first, and the number of jobs in a slot never exceeds ``slots``.

A job's life in the ledger: :meth:`Ledger.hold` (claimed, waiting for a slot), then either
:meth:`~Ledger.withdraw` (handed back before it started) or :meth:`~Ledger.begin` (in a slot),
then :meth:`~Ledger.end` (its outcome handed over) or :meth:`~Ledger.abandon` (it ignored its
token past kill_grace and is recorded without it).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jobkit._cancel import CancelToken
from jobkit._registry import JobType
from jobkit._runtime.executor import Prepared
from jobkit._runtime.reporter import JobReporter
from jobkit._store import ClaimedJob

#: Prefetch: while jobs turn over quickly the worker claims a few more than it has free slots, so a
#: slot that frees up starts its next job at once instead of after a claim round trip. The buffer is
#: sized so that a prefetched job waits about PREFETCH_WAIT seconds for its slot at the current rate
#: of completions (measured over PREFETCH_WINDOW), and never more than ``slots`` jobs; slow jobs
#: get no prefetch at all. A prefetched job that still has not started after PREFETCH_MAX_WAIT
#: (the jobs in the slots turned out long) is handed back to the queue for other workers.
PREFETCH_WAIT = 0.05
PREFETCH_WINDOW = 0.25
PREFETCH_MAX_WAIT = 1.0


@dataclass(slots=True, eq=False)
class HeldJob:
    """One job this worker holds: claimed, perhaps in a slot. Its flags change only under the ledger's lock."""

    job: ClaimedJob
    job_type: JobType | None
    token: CancelToken
    reporter: JobReporter
    #: monotonic time it was claimed.
    claimed: float = field(default_factory=time.monotonic)
    #: Set when an executor took the job into a slot.
    started: bool = False
    #: Set when the job was taken back before it started.
    withdrawn: bool = False
    #: True while the job holds one of the slots (cleared exactly once).
    in_slot: bool = False
    #: Set when the job ignored its token past kill_grace and was ended without it: its thread
    #: is left to finish alone and exits when it does.
    abandoned: bool = False
    #: Run in the caller's thread (``Worker.run_once``), not by an executor thread.
    inline: bool = False
    #: monotonic time the job took its slot.
    began: float = 0.0
    prepared: Prepared | None = None


class Ledger:
    """The jobs held, the slots in use and the room to claim; thread-safe.

    Example::

        ledger = Ledger(slots=4, prefetch=True)
        room = ledger.room(more=True)        # 4: every slot is free
        ledger.hold(held)
        if ledger.begin(held):               # waits for a free slot
            ...                              # run it
            ledger.end(held, hand_over)      # hand_over() runs under the lock, exactly once
    """

    def __init__(
        self,
        slots: int,
        *,
        prefetch: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        queue_slots: dict[str, int] | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"a ledger needs at least one slot, got {slots}")
        if queue_slots is not None and (not queue_slots or min(queue_slots.values()) < 1):
            raise ValueError(f"each queue needs at least one slot, got {queue_slots}")
        #: Jobs run at once; may be lowered or raised between claims (tests set ``worker.concurrency``).
        self.slots = slots
        #: Queues with slots of their own: each claims into its own room, so a queue whose jobs are
        #: slow fills its own slots only and never the others'. No prefetch then: a prefetched job
        #: would wait for a slot of its own queue while holding an executor thread another queue needs.
        self.queue_slots = dict(queue_slots) if queue_slots else None
        self.prefetch = prefetch and self.queue_slots is None
        self._monotonic = monotonic
        self._held: dict[int, HeldJob] = {}
        self._cv = threading.Condition()
        self._executing = 0
        self._finishes: collections.deque[float] = collections.deque(
            maxlen=max(1, round(slots * PREFETCH_WINDOW / PREFETCH_WAIT))
        )
        #: The most jobs that ever ran at once (never above ``slots``).
        self.peak = 0
        #: Jobs abandoned past kill_grace whose threads are still running them.
        self.stuck = 0

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._held)

    @property
    def executing(self) -> int:
        """Jobs in a slot now (prefetched jobs waiting for one are not counted)."""
        return self._executing

    def get(self, job_id: int) -> HeldJob | None:
        """The held job with this id, if any."""
        return self._held.get(job_id)

    def holds(self, held: HeldJob) -> bool:
        """True while ``held`` itself (not a later claim of the same job) is in the ledger."""
        return self._held.get(held.job.id) is held

    def snapshot(self) -> dict[int, HeldJob]:
        """The jobs held now, by id."""
        with self._cv:
            return dict(self._held)

    def stale(self, max_wait: float = PREFETCH_MAX_WAIT) -> list[HeldJob]:
        """Prefetched jobs that have waited for a slot longer than ``max_wait`` seconds."""
        now = self._monotonic()
        with self._cv:
            return [h for h in self._held.values() if not h.started and now - h.claimed > max_wait]

    # -- room to claim ----------------------------------------------------------------------------

    def prefetch_target(self) -> int:
        """Prefetched jobs worth holding: about PREFETCH_WAIT seconds of completions at the recent rate."""
        finishes = self._finishes
        if not finishes:
            return 0
        horizon = self._monotonic() - PREFETCH_WINDOW
        if finishes[0] >= horizon:
            count = len(finishes)
        else:
            count = 0
            for at in reversed(finishes):
                if at < horizon:
                    break
                count += 1
        return min(self.slots, int(count * PREFETCH_WAIT / PREFETCH_WINDOW))

    def room(self, *, more: bool) -> int:
        """How many jobs to claim now (0: wait); ``more``: the last claim found as many as it asked for."""
        held = len(self._held)
        slots = self.slots
        target = self.prefetch_target() if more and self.prefetch else 0
        room = slots + target - held
        if room <= 0:
            return 0
        if held < slots:
            return room  # fewer jobs held than slots: a slot would sit idle, claim at once
        # Every free slot has a prefetched job: top the buffer up in batches, not one job at a time.
        return room if room >= max(1, (slots + target) // 2) else 0

    def room_in(self, queue: str) -> int:
        """How many jobs of ``queue`` to claim now: its own free slots (queues with slots of their own)."""
        if self.queue_slots is None:
            raise ValueError("room_in needs queues with slots of their own")
        with self._cv:
            held = sum(1 for h in self._held.values() if h.job.queue == queue)
        return max(0, self.queue_slots.get(queue, 0) - held)

    # -- a job's life -------------------------------------------------------------------------------

    def hold(self, held: HeldJob) -> None:
        """Record a claimed job."""
        held.claimed = self._monotonic()
        with self._cv:
            self._held[held.job.id] = held

    def begin(self, held: HeldJob) -> bool:
        """Move a held job into a slot, waiting for one; False when it was withdrawn or written off meanwhile."""
        with self._cv:
            # Sync jobs alone never wait here (there is a thread per slot); async jobs hold a
            # slot without holding a thread, so with them a thread may have to wait.
            while self._executing >= self.slots and not held.withdrawn:
                self._cv.wait()
            if held.withdrawn or self._held.get(held.job.id) is not held:
                return False
            held.started = True
            held.in_slot = True
            held.began = self._monotonic()
            self._executing += 1
            if self._executing > self.peak:
                self.peak = self._executing
        return True

    def withdraw(self, held: HeldJob) -> bool:
        """Take back a held job that has not started; False if it started (or ended) already."""
        with self._cv:
            if held.started or held.withdrawn or self._held.get(held.job.id) is not held:
                return False
            held.withdrawn = True
            self._cv.notify_all()
        return True

    def end(self, held: HeldJob, hand_over: Callable[[], None]) -> bool:
        """Free the job's slot and, if this is its first ending, call ``hand_over`` and forget it.

        ``hand_over`` (giving the outcome to the completer) runs under the lock, so a job leaves
        the ledger only once its outcome has been handed on: whoever reads a snapshot and then
        finds the completer idle knows every job missing from it has been written.
        """
        with self._cv:
            return self._end_locked(held, hand_over)

    def abandon(self, held: HeldJob, hand_over: Callable[[], None], *, thread_bound: bool) -> int | None:
        """End a job in a slot without waiting for it; returns the stuck-thread count, None if it ended meanwhile."""
        with self._cv:
            if not held.in_slot or self._held.get(held.job.id) is not held:
                return None
            held.abandoned = True
            if thread_bound:
                self.stuck += 1
            self._end_locked(held, hand_over)
            return self.stuck

    def returned(self, held: HeldJob) -> bool:
        """The thread that ran ``held`` is free again; True if the job had been abandoned (the thread must go)."""
        with self._cv:
            if not held.abandoned:
                return False
            self.stuck -= 1
            return True

    def _end_locked(self, held: HeldJob, hand_over: Callable[[], None]) -> bool:
        # The first ending wins: a job abandoned past kill_grace may still return later, and a
        # shutdown may have written a job off; neither may free the slot or write twice.
        if held.in_slot:
            held.in_slot = False
            self._executing -= 1
            self._cv.notify_all()
        if self._held.get(held.job.id) is not held:
            return False
        del self._held[held.job.id]
        hand_over()
        self._finishes.append(self._monotonic())
        self._cv.notify_all()
        return True

    # -- shutdown -------------------------------------------------------------------------------------

    def wait_empty(self, until: float, give_up: threading.Event | None = None) -> bool:
        """Wait until nothing is held, ``until`` (monotonic) passes or ``give_up`` is set; True if empty."""
        with self._cv:
            while self._held and not (give_up is not None and give_up.is_set()):
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(0.1, left))
            return not self._held

    def write_off(self) -> list[HeldJob]:
        """Forget every held job at once (they outlived a shutdown); their late endings are ignored."""
        with self._cv:
            gone = list(self._held.values())
            self._held.clear()
            self._cv.notify_all()
            return gone

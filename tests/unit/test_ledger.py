"""The held-jobs ledger: room to claim, the prefetch target, and each job ending exactly once."""

from __future__ import annotations

from jobkit._runtime.ledger import PREFETCH_MAX_WAIT, PREFETCH_WAIT, PREFETCH_WINDOW, HeldJob, Ledger
from tests.unit.doubles import Ticks, held


def fill(ledger: Ledger, count: int, start: int = 1) -> list[HeldJob]:
    jobs = [held(i) for i in range(start, start + count)]
    for job in jobs:
        ledger.hold(job)
    return jobs


def finish_quickly(ledger: Ledger, count: int, start: int = 1000) -> None:
    """``count`` jobs that begin and end now, as a fast-turning queue does."""
    for job in fill(ledger, count, start):
        assert ledger.begin(job)
        ledger.end(job, lambda: None)


def test_an_empty_ledger_has_room_for_every_slot() -> None:
    """Nothing held: claim as many as there are slots, prefetching or not."""
    assert Ledger(4).room(more=True) == 4
    assert Ledger(4, prefetch=False).room(more=False) == 4


def test_room_shrinks_with_the_jobs_held() -> None:
    """Every held job, prefetched or running, takes one place."""
    ledger = Ledger(4)
    fill(ledger, 3)
    assert ledger.room(more=False) == 1


def test_no_room_when_every_slot_is_held() -> None:
    """Without recent completions there is no prefetch target: a full ledger claims nothing."""
    ledger = Ledger(4)
    fill(ledger, 4)
    assert ledger.room(more=True) == 0


def test_the_prefetch_target_follows_the_recent_completion_rate() -> None:
    """About PREFETCH_WAIT seconds of completions over the last PREFETCH_WINDOW, never above the slots."""
    ticks = Ticks()
    ledger = Ledger(10, monotonic=ticks)
    assert ledger.prefetch_target() == 0
    finish_quickly(ledger, 20)
    assert ledger.prefetch_target() == int(20 * PREFETCH_WAIT / PREFETCH_WINDOW)
    finish_quickly(ledger, 100, start=2000)
    assert ledger.prefetch_target() == 10


def test_old_completions_fall_out_of_the_window() -> None:
    """Completions older than PREFETCH_WINDOW no longer count: slow jobs get no prefetch."""
    ticks = Ticks()
    ledger = Ledger(10, monotonic=ticks)
    finish_quickly(ledger, 40)
    ticks.now += PREFETCH_WINDOW + 0.01
    assert ledger.prefetch_target() == 0


def test_a_full_ledger_tops_the_prefetch_buffer_up_in_batches() -> None:
    """With every slot held, claim only when at least half of slots + target is missing."""
    ticks = Ticks()
    ledger = Ledger(4, monotonic=ticks)
    finish_quickly(ledger, 40)  # target: min(4, 40 * 0.05 / 0.25) = 4
    fill(ledger, 4)
    assert ledger.room(more=True) == 4  # 4 + 4 - 4 >= (4 + 4) // 2
    fill(ledger, 1, start=50)
    assert ledger.room(more=True) == 0  # 3 missing, fewer than 4: wait for more room
    assert ledger.room(more=False) == 0  # without "more", no prefetch at all


def test_prefetch_off_never_claims_ahead() -> None:
    """With prefetch off the room is the free slots only."""
    ticks = Ticks()
    ledger = Ledger(4, prefetch=False, monotonic=ticks)
    finish_quickly(ledger, 40)
    fill(ledger, 4)
    assert ledger.room(more=True) == 0


def test_begin_takes_a_slot_and_end_frees_it_once() -> None:
    """A job begins in a slot; its first ending hands it over, a second one is ignored."""
    ledger = Ledger(2)
    [job] = fill(ledger, 1)
    assert ledger.begin(job)
    assert (ledger.executing, ledger.peak, job.started, job.in_slot) == (1, 1, True, True)
    handed: list[int] = []
    assert ledger.end(job, lambda: handed.append(1)) is True
    assert ledger.end(job, lambda: handed.append(2)) is False
    assert (handed, ledger.executing, len(ledger)) == ([1], 0, 0)


def test_a_withdrawn_job_never_begins() -> None:
    """A prefetched job taken back cannot take a slot afterwards; a started one cannot be withdrawn."""
    ledger = Ledger(2)
    waiting, running = fill(ledger, 2)
    assert ledger.begin(running)
    assert ledger.withdraw(waiting) is True
    assert ledger.begin(waiting) is False
    assert ledger.withdraw(running) is False


def test_an_abandoned_job_is_ended_and_its_thread_counted_until_it_returns() -> None:
    """Abandoning ends the job now and counts a stuck thread; its late return frees the count only."""
    ledger = Ledger(1)
    [job] = fill(ledger, 1)
    ledger.begin(job)
    handed: list[str] = []
    assert ledger.abandon(job, lambda: handed.append("abandoned"), thread_bound=True) == 1
    assert (ledger.executing, len(ledger), ledger.stuck) == (0, 0, 1)
    assert ledger.end(job, lambda: handed.append("returned")) is False
    assert ledger.returned(job) is True
    assert (handed, ledger.stuck) == (["abandoned"], 0)


def test_a_job_that_ended_cannot_be_abandoned() -> None:
    """The watchdog arriving after the job's own ending does nothing."""
    ledger = Ledger(1)
    [job] = fill(ledger, 1)
    ledger.begin(job)
    ledger.end(job, lambda: None)
    assert ledger.abandon(job, lambda: None, thread_bound=True) is None
    assert ledger.stuck == 0


def test_prefetched_jobs_go_stale_after_the_max_wait() -> None:
    """Only jobs that waited for a slot longer than PREFETCH_MAX_WAIT are stale; started ones never."""
    ticks = Ticks()
    ledger = Ledger(1, monotonic=ticks)
    running, waiting = fill(ledger, 2)
    ledger.begin(running)
    assert ledger.stale() == []
    ticks.now += PREFETCH_MAX_WAIT + 0.01
    assert ledger.stale() == [waiting]


def test_a_write_off_forgets_every_job_and_ignores_their_late_endings() -> None:
    """Jobs written off at shutdown are gone; a late ending frees its slot but hands nothing over."""
    ledger = Ledger(2)
    [job] = fill(ledger, 1)
    ledger.begin(job)
    assert ledger.write_off() == [job]
    assert ledger.end(job, lambda: None) is False
    assert (len(ledger), ledger.executing) == (0, 0)


def test_lowering_the_slots_lowers_the_room() -> None:
    """Slots may change between claims (a test runs one job at a time)."""
    ledger = Ledger(5)
    ledger.slots = 1
    assert ledger.room(more=False) == 1

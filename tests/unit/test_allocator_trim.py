"""When a consumer process gives glibc's free heap memory back (#12, allocator_trim.py):
the schedule's decisions, and the thread that follows them. No real time: the clock, the CPU
time and the heap are given."""

from __future__ import annotations

import threading

from branchline_shared.allocator_trim import (
    GlibcHeap,
    TrimPolicy,
    TrimSchedule,
    glibc_heap,
    run_trims,
    trimming_allocator,
)

MB = 2**20
GROWN = 130 * MB  # the resident size at a look: 30 MB more than after start or a trim
POLICY = TrimPolicy(interval_s=10, min_free_bytes=8 * MB, quiet_cpu_share=0.25, busy_wait_s=60)


def test_a_quiet_process_holding_enough_free_is_trimmed_once_an_interval_has_passed() -> None:
    schedule = TrimSchedule(POLICY, now=0, cpu_s=0, resident=100 * MB)
    # too soon after start
    assert not schedule.due(now=5, cpu_s=0.1, free_bytes=30 * MB, resident=GROWN)
    assert schedule.due(now=10, cpu_s=0.2, free_bytes=30 * MB, resident=GROWN)
    schedule.trimmed(10, resident=100 * MB)
    assert not schedule.due(now=15, cpu_s=0.3, free_bytes=30 * MB, resident=GROWN)  # rate limited
    assert schedule.due(now=20, cpu_s=0.4, free_bytes=30 * MB, resident=GROWN)


def test_too_little_held_free_is_not_worth_a_trim() -> None:
    schedule = TrimSchedule(POLICY, now=0, cpu_s=0, resident=100 * MB)
    assert not schedule.due(now=30, cpu_s=0, free_bytes=8 * MB - 1, resident=GROWN)
    assert schedule.due(now=40, cpu_s=0, free_bytes=8 * MB, resident=GROWN)


def test_a_busy_process_waits_for_a_pause_but_not_longer_than_busy_wait() -> None:
    schedule = TrimSchedule(POLICY, now=0, cpu_s=0, resident=100 * MB)
    cpu = 0.0
    decisions = []
    for now in range(10, 70, 10):
        cpu += 9.0  # 90 % of a CPU in every look
        decisions.append(schedule.due(now=now, cpu_s=cpu, free_bytes=30 * MB, resident=GROWN))
    assert decisions == [False, False, False, False, False, True]  # trimmed at 60 s, busy
    schedule.trimmed(60, resident=100 * MB)
    cpu += 1.0  # a pause: 10 % of a CPU
    assert schedule.due(now=70, cpu_s=cpu, free_bytes=30 * MB, resident=GROWN)


def test_quiet_is_measured_since_the_previous_look_not_since_start() -> None:
    schedule = TrimSchedule(POLICY, now=0, cpu_s=0, resident=100 * MB)
    # a busy burst, nothing free
    assert not schedule.due(now=5, cpu_s=4.5, free_bytes=0, resident=GROWN)
    # 0.5 s of CPU in the 5 s since that look: quiet, though 5 s in 10 s is not
    assert schedule.due(now=10, cpu_s=5.0, free_bytes=30 * MB, resident=GROWN)


def test_a_trim_is_not_repeated_until_the_resident_size_has_grown_again() -> None:
    # glibc counts the pages a trim gave back as free still: the free bytes do not fall
    schedule = TrimSchedule(POLICY, now=0, cpu_s=0, resident=100 * MB)
    assert schedule.due(now=10, cpu_s=0, free_bytes=30 * MB, resident=130 * MB)
    schedule.trimmed(10, resident=105 * MB)
    assert not schedule.due(now=20, cpu_s=0, free_bytes=30 * MB, resident=112 * MB)
    assert schedule.due(now=30, cpu_s=0, free_bytes=30 * MB, resident=113 * MB)


def test_an_interval_of_zero_never_trims() -> None:
    schedule = TrimSchedule(TrimPolicy(interval_s=0), now=0, cpu_s=0, resident=0)
    assert not schedule.due(now=1e6, cpu_s=0, free_bytes=10**12, resident=10**12)


class FakeHeap:
    def __init__(self, stop: threading.Event, looks: int) -> None:
        self.stop, self.looks, self.trims, self.size = stop, looks, 0, 100 * MB

    def free_bytes(self) -> int:
        self.looks -= 1
        if self.looks == 0:
            self.stop.set()
        return 100 * MB

    def trim(self) -> None:
        self.trims += 1
        self.size -= 20 * MB

    def resident(self) -> int:
        return self.size


class Bursts(threading.Event):
    """Between two looks, a burst: 20 MB more resident."""

    heap: FakeHeap

    def wait(self, timeout: float | None = None) -> bool:
        self.heap.size += 20 * MB
        return self.is_set()


def test_the_thread_trims_as_the_schedule_says() -> None:
    stop = Bursts()
    fake = FakeHeap(stop, looks=4)
    stop.heap = fake
    times = iter(range(0, 1000, 5))  # each call of the clock: 5 s later
    run_trims(
        TrimPolicy(interval_s=1e-6, min_free_bytes=MB, busy_wait_s=1e9),
        GlibcHeap(fake.free_bytes, fake.trim, fake.resident),
        stop,
        clock=lambda: float(next(times)),
        cpu=lambda: 0.0,  # quiet throughout
    )
    assert fake.looks == 0
    assert fake.trims == 4  # each look: quiet, an interval on, 100 MB free, 20 MB regrown


def test_off_starts_no_thread() -> None:
    before = threading.active_count()
    with trimming_allocator(TrimPolicy(interval_s=0), "test"):
        assert threading.active_count() == before


def test_on_glibc_the_functions_are_found_and_callable() -> None:
    heap = glibc_heap()
    assert heap is not None  # the images and CI run Debian's glibc
    assert heap.free_bytes() >= 0
    assert heap.resident() > 0
    heap.trim()

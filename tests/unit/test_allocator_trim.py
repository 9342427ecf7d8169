"""When a consumer gives glibc's free heap memory back after its batches (#12,
allocator_trim.py): the schedule's decisions (pure: the time and the records are given), the
hook that follows them, and glibc's function found where there is one."""

from __future__ import annotations

import ctypes.util

import pytest

from branchline_shared import allocator_trim
from branchline_shared.allocator_trim import (
    BatchTrimmer,
    TrimPolicy,
    TrimSchedule,
    batch_trimmer,
    glibc_malloc_trim,
    trim_policy,
)
from branchline_shared.settings import AuditSettings, FollowupSettings

pytestmark = pytest.mark.unit

POLICY = TrimPolicy(interval_s=10, min_records=1000)


def test_no_trim_before_an_interval_has_passed_since_start_or_the_last_trim() -> None:
    schedule = TrimSchedule(POLICY, now=0)
    assert not schedule.after_round(now=5, records=5000)  # start-up's garbage: wait
    assert schedule.after_round(now=10, records=0)  # the 5000 still count
    assert not schedule.after_round(now=15, records=5000)  # rate limited
    assert not schedule.after_round(now=19.9, records=5000)
    assert schedule.after_round(now=20, records=1)


def test_a_consumer_that_handled_too_few_records_since_the_last_trim_is_not_trimmed() -> None:
    schedule = TrimSchedule(POLICY, now=0)
    assert not schedule.after_round(now=100, records=999)
    assert not schedule.after_round(now=200, records=0)  # idle: nothing new held
    assert schedule.after_round(now=201, records=1)  # the 1000th record


def test_the_records_counted_start_again_at_each_trim() -> None:
    schedule = TrimSchedule(POLICY, now=0)
    assert schedule.after_round(now=10, records=3000)
    assert not schedule.after_round(now=30, records=999)
    assert schedule.after_round(now=31, records=1)


def test_a_burst_that_ended_within_an_interval_of_the_last_trim_is_trimmed_when_idle() -> None:
    # the empty fetches of an idle consumer (records=0) still let the due trim happen
    schedule = TrimSchedule(POLICY, now=0)
    assert schedule.after_round(now=10, records=2000)
    assert not schedule.after_round(now=12, records=50_000)  # the burst, just after a trim
    decisions = [schedule.after_round(now=t, records=0) for t in (13, 16, 19, 22, 25)]
    assert decisions == [False, False, False, True, False]


def test_an_interval_of_zero_never_trims() -> None:
    schedule = TrimSchedule(TrimPolicy(interval_s=0, min_records=1), now=0)
    assert not any(schedule.after_round(now=t * 1e3, records=10**6) for t in range(1, 10))


def test_the_hook_trims_when_the_schedule_says_so_and_counts_it() -> None:
    now = [0.0]
    trims: list[float] = []
    hook = BatchTrimmer(POLICY, trim=lambda: trims.append(now[0]), clock=lambda: now[0])
    counted = allocator_trim.TRIMS._value.get()
    for t, records in [(1, 500), (10, 500), (15, 5000), (21, 0), (25, 0)]:
        now[0] = t
        hook.after_round(records)
    assert trims == [10, 21]
    assert allocator_trim.TRIMS._value.get() == counted + 2


def test_the_policy_is_read_from_the_settings_with_a_safe_default() -> None:
    assert trim_policy(AuditSettings()) == TrimPolicy(interval_s=10, min_records=1000)
    assert trim_policy(FollowupSettings(malloc_trim_interval_s=0)).interval_s == 0


def test_off_gives_no_hook() -> None:
    assert batch_trimmer(TrimPolicy(interval_s=0)) is None


def test_no_hook_where_the_c_library_has_no_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert glibc_malloc_trim() is None
    assert batch_trimmer(POLICY) is None


def _glibc() -> bool:
    name = ctypes.util.find_library("c")
    try:
        return name is not None and hasattr(ctypes.CDLL(name), "malloc_trim")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="the C library is not glibc (no malloc_trim)")
def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None
    trim()  # returns nothing, raises nothing
    assert batch_trimmer(POLICY) is not None

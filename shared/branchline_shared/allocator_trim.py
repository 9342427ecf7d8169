"""Give glibc's held-free heap memory back after a consumer's batches (#12).

A consumer process (the followup worker, the audit consumer) frees what a batch allocated once
the batch is done, but glibc's ``malloc`` keeps freed memory in its heaps for later
allocations and returns it to the system on its own only from the top of the main heap. What
it holds free grew with the events while the consumers' live data stayed flat (the followup
worker 28 -> 75 MB from 100k to 1M events: docs/performance.md, "RSS at 1,000,000 events with
the getmany worker"). ``malloc_trim(0)`` gives every arena's free pages back (``madvise``).

When: :class:`TrimSchedule` (pure) decides after each of the consumer loop's rounds (a batch
or an empty fetch): at least ``min_records`` handled since the last trim, and at least
``interval_s`` since it. So a busy consumer trims at most once per interval, an idle one not at
all, and one that worked off a burst (``min_records`` or more since the last trim) trims
within an interval of its end, on an empty fetch if need be. The call is
made on the loop's own thread between two batches (no thread of its own); its time is counted
(``branchline_malloc_trim_seconds_total``).

Where the C library is not glibc (no ``malloc_trim``) nothing is done. ``interval_s = 0``
turns it off (``BRANCHLINE_MALLOC_TRIM_INTERVAL_S``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from branchline_shared.settings import CommonSettings

TRIMS = Counter("branchline_malloc_trims_total", "Times glibc's free heap memory was returned")
TRIM_SECONDS = Counter(
    "branchline_malloc_trim_seconds_total", "Wall time spent in malloc_trim (the loop's thread)"
)


@dataclass(frozen=True)
class TrimPolicy:
    interval_s: float = 10.0
    """Least time between two trims (0: never)."""
    min_records: int = 1000
    """Least records handled since the last trim: an idle consumer holds nothing new."""


def trim_policy(settings: CommonSettings) -> TrimPolicy:
    return TrimPolicy(settings.malloc_trim_interval_s, settings.malloc_trim_min_records)


class TrimSchedule:
    """Whether to trim after a round of the consumer loop (pure: given the time and the
    records the round handled)."""

    def __init__(self, policy: TrimPolicy, now: float) -> None:
        self._policy = policy
        self._trimmed_at = now  # start-up's own garbage: the first trim waits an interval
        self._records = 0

    def after_round(self, now: float, records: int) -> bool:
        """Count ``records`` (0 for an empty fetch) and say whether to trim now; a yes is
        taken as the trim done at ``now``."""
        self._records += records
        policy = self._policy
        if policy.interval_s <= 0 or self._records < policy.min_records:
            return False
        if now - self._trimmed_at < policy.interval_s:
            return False
        self._trimmed_at, self._records = now, 0
        return True


def glibc_malloc_trim() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        malloc_trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    malloc_trim.restype = ctypes.c_int
    malloc_trim.argtypes = [ctypes.c_size_t]

    def trim() -> None:
        malloc_trim(0)

    return trim


class BatchTrimmer:
    """The consumer loop's hook: :meth:`after_round` after each round, trims when due."""

    def __init__(
        self,
        policy: TrimPolicy,
        trim: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._schedule = TrimSchedule(policy, clock())
        self._trim = trim
        self._clock = clock

    def after_round(self, records: int) -> None:
        if not self._schedule.after_round(self._clock(), records):
            return
        started = time.perf_counter()
        self._trim()
        TRIM_SECONDS.inc(time.perf_counter() - started)
        TRIMS.inc()


def batch_trimmer(policy: TrimPolicy) -> Callable[[int], None] | None:
    """The hook for a consumer loop, or None where it is off or the C library is not glibc."""
    if policy.interval_s <= 0:
        return None
    trim = glibc_malloc_trim()
    if trim is None:
        return None
    return BatchTrimmer(policy, trim).after_round

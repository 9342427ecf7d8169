"""Give the C heap's free memory back to the system at quiet moments (#12).

A consumer process (the followup worker, the audit consumer) frees most of what a batch
allocated once the batch is done, but glibc's ``malloc`` keeps freed memory inside its heaps
for the next allocations; it returns memory to the system on its own only from the top of the
main heap (``M_TRIM_THRESHOLD``), never from the middle of a heap nor from a thread's arena
(Faust's consumer thread has its own). So the resident size follows the largest burst seen so
far (a lagging worker working off a backlog, a self-check page, a fetch of many messages)
rather than what is live: docs/performance.md, "Memory of the whole processes" (Round 6) and
"Allocator trim in the consumers" (Round 7) measured 16-30 MB held free in the followup worker.

``malloc_trim(0)`` releases the free pages of every arena (``madvise``). It walks the heaps
under each arena's lock, so it is done from a thread of its own (ctypes releases the GIL: the
event loop keeps running) and only when it pays: when glibc holds at least ``min_free_bytes``
free, at most once per ``interval_s``, and preferably when the process is quiet (it used less
than ``quiet_cpu_share`` of a CPU since the last look, i.e. between bursts); a process busy for
``busy_wait_s`` is trimmed anyway, so a consumer that never idles still does not keep the
high-water of its bursts. Pages given back cost a page fault each when reused: the rate limit
keeps that small against the batches' own work.

Started by the entrypoints of the long-running consumers (``branchline run``), never by a
library function. Where the C library is not glibc (no ``malloc_trim``/``mallinfo2``) nothing
is started. ``interval_s = 0`` turns it off, and that is the default setting
(``BRANCHLINE_MALLOC_TRIM_INTERVAL_S``): measured in alternation against no trim, the consumers'
RSS was not lower at 50k-300k events, because what grows is pymalloc's arenas, which
``malloc_trim`` does not reach (docs/performance.md, Round 7).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger(__name__)

TRIMS = Counter("branchline_malloc_trims_total", "Times the C heap's free memory was returned")
RETURNED = Counter(
    "branchline_malloc_trimmed_bytes_total",
    "Resident bytes the trims gave back (resident size before minus after each trim)",
)


@dataclass(frozen=True)
class TrimPolicy:
    interval_s: float = 10.0
    """How often the heap is looked at, and the least time between two trims (0: never)."""
    min_free_bytes: int = 8 * 2**20
    """Less held free than this, or the resident size grown less than this since the last
    trim: not worth a trim (glibc still counts trimmed pages as free: the free bytes alone
    would call for a trim at every look)."""
    quiet_cpu_share: float = 0.25
    """The process used less than this share of one CPU since the last look: quiet."""
    busy_wait_s: float = 60.0
    """Busy without a pause this long (and enough held free): trimmed all the same."""


class TrimSchedule:
    """When to trim: decided from the time, the process's CPU time and glibc's free bytes at
    each look (pure: the thread below feeds it)."""

    def __init__(self, policy: TrimPolicy, now: float, cpu_s: float, resident: int) -> None:
        self._policy = policy
        self._looked_at = now
        self._cpu_at = cpu_s
        self._trimmed_at = now  # start-up's own garbage: the first trim waits an interval
        self._resident_after = resident

    def due(self, now: float, cpu_s: float, free_bytes: int, resident: int) -> bool:
        """Whether to trim now; each call is a look (the next look's quiet is measured from
        it). Call :meth:`trimmed` after a trim."""
        policy = self._policy
        elapsed = now - self._looked_at
        used = cpu_s - self._cpu_at
        self._looked_at, self._cpu_at = now, cpu_s
        if policy.interval_s <= 0 or free_bytes < policy.min_free_bytes:
            return False
        if resident - self._resident_after < policy.min_free_bytes:
            return False  # given back already, not grown since
        since_trim = now - self._trimmed_at
        if since_trim < policy.interval_s:
            return False
        quiet = elapsed > 0 and used < policy.quiet_cpu_share * elapsed
        return quiet or since_trim >= policy.busy_wait_s

    def trimmed(self, now: float, resident: int) -> None:
        """A trim was done at ``now``; ``resident``: the resident size after it."""
        self._trimmed_at = now
        self._resident_after = resident


_MALLINFO2_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",  # free bytes held in the arenas
    "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


@dataclass(frozen=True)
class GlibcHeap:
    """glibc's ``mallinfo2`` (free bytes) and ``malloc_trim``, and the resident size."""

    free_bytes: Callable[[], int]
    trim: Callable[[], None]
    resident: Callable[[], int]


def glibc_heap() -> GlibcHeap | None:
    """glibc's functions, or None where the C library has none (musl, macOS, glibc < 2.33)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallinfo2 = libc.mallinfo2
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []
    malloc_trim.restype = ctypes.c_int
    malloc_trim.argtypes = [ctypes.c_size_t]

    def free_bytes() -> int:
        return int(mallinfo2().fordblks)

    def trim() -> None:
        malloc_trim(0)

    return GlibcHeap(free_bytes, trim, resident_bytes)


def resident_bytes() -> int:
    """The process's resident anonymous memory (what the heaps hold), 0 if unknown."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_trims(
    policy: TrimPolicy,
    heap: GlibcHeap,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    cpu: Callable[[], float] = time.process_time,
) -> None:
    """Look every ``interval_s`` until ``stop`` is set; trim when the schedule says so."""
    schedule = TrimSchedule(policy, clock(), cpu(), heap.resident())
    while not stop.wait(policy.interval_s):
        before = heap.resident()
        if schedule.due(clock(), cpu(), heap.free_bytes(), before):
            heap.trim()
            after = heap.resident()
            schedule.trimmed(clock(), after)
            TRIMS.inc()
            RETURNED.inc(max(0, before - after))


@contextlib.contextmanager
def trimming_allocator(policy: TrimPolicy, name: str) -> Iterator[None]:
    """Trim in a daemon thread while the block runs (nothing where it is off or not glibc)."""
    heap = glibc_heap() if policy.interval_s > 0 else None
    if heap is None:
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(
        target=run_trims, args=(policy, heap, stop), name=f"{name}-malloc-trim", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)

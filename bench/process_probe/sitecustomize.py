"""A memory probe that ``bench.profile_processes`` loads into the stack's own processes (this
folder first on ``PYTHONPATH``; Python imports ``sitecustomize`` at start-up). Nothing in the
product imports it.

In a process whose command line names a component of ``BENCH_PROBE_COMPONENTS``, SIGUSR2 writes
``<BENCH_PROBE_DIR>/<component>-<n>.json``: RSS, glibc's heap (``mallinfo2``: in use, free,
mmapped), pymalloc's arenas, the collector's live objects by type, the threads; with
``BENCH_PROBE_TRACEMALLOC=N`` also a tracemalloc snapshot beside it (tracing, N frames,
starts at the first probe); with ``BENCH_PROBE_TRIM=1`` it then calls ``malloc_trim(0)`` and
records the RSS after it (what the allocator held free and could give back);
``BENCH_PROBE_CACHES=module:function,...`` reports those ``functools.lru_cache``s' hits, misses
and sizes.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from types import FrameType

_MALLINFO2 = (
    "arena",  # bytes from the system (all arenas, not mmapped chunks)
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",  # bytes in mmapped chunks
    "usmblks",
    "fsmblks",
    "uordblks",  # bytes in use
    "fordblks",  # bytes free, held
    "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pymalloc_arenas() -> dict[str, int]:
    """The arena figures of ``sys._debugmallocstats`` (it writes to C's stderr: caught)."""
    reader, writer = os.pipe()
    saved = os.dup(2)
    text = b""
    try:
        os.dup2(writer, 2)
        os.close(writer)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    with os.fdopen(reader, "rb") as out:
        text = out.read()
    wanted = {}
    for line in text.decode(errors="replace").splitlines():
        name, _, value = line.rpartition("=")
        name = name.strip().lstrip("#").strip()
        if name.startswith(
            ("arenas allocated current", "arenas highwater", "bytes in ", "bytes lost")
        ):
            wanted[name] = int(value.strip().replace(",", ""))
    return wanted


def _held_by(type_names: list[str], sample: int = 200) -> dict[str, dict[str, int]]:
    """For the last ``sample`` live objects of each type named: what holds them, two levels up
    (the holder's type, and its own holder's type)."""
    found: dict[str, dict[str, int]] = {}
    objects = gc.get_objects()
    for name in type_names:
        chosen = [o for o in objects if type(o).__qualname__ == name][-sample:]
        holders: collections.Counter[str] = collections.Counter()
        for obj in chosen:
            for ref in gc.get_referrers(obj):
                if ref is objects or ref is chosen:
                    continue
                above = [
                    type(r).__qualname__
                    for r in gc.get_referrers(ref)
                    if r is not objects and r is not chosen and type(r).__name__ != "frame"
                ][:3]
                holders[f"{type(ref).__qualname__} <- {'/'.join(above)}"] += 1
        found[name] = dict(holders.most_common(8))
    del objects
    return found


def _install(component: str, folder: Path) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    frames = int(os.environ.get("BENCH_PROBE_TRACEMALLOC", "0") or 0)
    trim = os.environ.get("BENCH_PROBE_TRIM") == "1"
    caches = [c for c in os.environ.get("BENCH_PROBE_CACHES", "").split(",") if c]
    held_types = [t for t in os.environ.get("BENCH_PROBE_HELD_BY", "").split(",") if t]
    taken = 0

    def dump(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        name = f"{component}-{taken}"
        gc.collect()
        types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        info = libc.mallinfo2()
        figures: dict[str, object] = {
            "rss_kb": _status_kb("VmRSS"),
            "hwm_kb": _status_kb("VmHWM"),
            "anon_kb": _status_kb("RssAnon"),
            "threads": threading.active_count(),
            "os_threads": _status_kb("Threads"),
            "malloc": {f: getattr(info, f) for f in _MALLINFO2},
            "pymalloc": _pymalloc_arenas(),
            "allocated_blocks": sys.getallocatedblocks(),
            "gc_objects": sum(types.values()),
            "gc_frozen": gc.get_freeze_count(),
            "types": dict(types.most_common(80)),
            "cpu_s": time.process_time(),
        }
        trims = sys.modules.get("branchline_shared.allocator_trim")
        if trims is not None:  # the consumers' own trims after their batches
            figures["trims"] = trims.TRIMS._value.get()
            figures["trim_s"] = trims.TRIM_SECONDS._value.get()
        found: dict[str, object] = {}
        for named in caches:
            module, _, function = named.partition(":")
            cached = getattr(sys.modules.get(module), function, None)
            if cached is not None and hasattr(cached, "cache_info"):
                found[named] = cached.cache_info()._asdict()
        if found:
            figures["caches"] = found
        if held_types:
            figures["held_by"] = _held_by(held_types)
        if tracemalloc.is_tracing():
            figures["traced"] = tracemalloc.get_traced_memory()
            tracemalloc.take_snapshot().dump(str(folder / f"{name}.tmsnap"))
        if frames and not tracemalloc.is_tracing():
            # From the first probe on (started at start-up, it slows the start past the
            # stack's readiness wait): what is allocated after it and still alive is growth.
            tracemalloc.start(frames)
            tracemalloc.take_snapshot().dump(str(folder / f"{name}.tmsnap"))
        if trim:
            libc.malloc_trim(0)
            figures["rss_after_trim_kb"] = _status_kb("VmRSS")
        (folder / f"{name}.json").write_text(json.dumps(figures))

    signal.signal(signal.SIGUSR2, dump)


def _start() -> None:
    folder = os.environ.get("BENCH_PROBE_DIR")
    wanted = os.environ.get("BENCH_PROBE_COMPONENTS", "").split(",")
    if not folder:
        return
    for component in wanted:
        if component and component in sys.argv:
            _install(component, Path(folder))
            return


_start()

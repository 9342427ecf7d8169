"""The position-jump table's memory at its bound and its cost per event (#12).

Fills a :class:`PositionJumps` with ``--streams`` streams (its default bound, 100,000) and as
many again, so that every one of the second half evicts one of the first: the growth fill's
pattern (a new client per event). It prints, for the table of ``branchline_shared`` (the
arrays) and for the one it replaced (``OrderedDictJumps`` below, a copy of the code before
#12, for the comparison only), what tracemalloc counts as alive once the table is full: bytes
and blocks (allocations), in all and per stream.

Then ``--pairs`` alternated timings (A B A B ...) of ``seen`` per call, each over
``--calls`` events on a full table: ``new`` streams (each evicts the least recent one) and
``known`` streams (each the next version of a remembered stream). Events are stand-ins with
the three fields ``seen`` reads, built beforehand; the stream ids are the growth fill's
(``intake/client-C-<run>-<i>``).

    python -m bench.profile_jumps [--streams 100000] [--pairs 5] [--calls 200000]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from branchline_shared.reconcile.jumps import PositionJumps


class OrderedDictJumps:
    """The table before #12: one key string and one ordered-dict entry per stream (jumps are
    only counted here; the kept code's logging and metric do not run in these workloads)."""

    def __init__(self, consumer: str, *, max_streams: int = 100_000) -> None:
        self._max_streams = max_streams
        self._last: OrderedDict[str, int] = OrderedDict()
        self.jumps = 0

    def seen(self, event: Any, position: Any = None) -> bool:
        key = f"{event.source}/{event.stream_id}"
        last = self._last.get(key)
        if last is not None and event.stream_version <= last:
            return False
        self._last[key] = event.stream_version
        self._last.move_to_end(key)
        if len(self._last) > self._max_streams:
            self._last.popitem(last=False)
        if last is None or event.stream_version == last + 1:
            return False
        self.jumps += 1
        return True


class Event:
    __slots__ = ("source", "stream_id", "stream_version")

    def __init__(self, stream_id: str, version: int) -> None:
        self.source = "intake"
        self.stream_id = stream_id
        self.stream_version = version


Table = Callable[[int], Any]
TABLES: dict[str, Table] = {
    "before (OrderedDict)": lambda n: OrderedDictJumps("bench", max_streams=n),
    "after (arrays)": lambda n: PositionJumps("bench", max_streams=n),
}


def stream_ids(run: str, start: int, count: int) -> list[str]:
    return [f"client-C-{run}-{i}" for i in range(start, start + count)]


def memory(name: str, make: Table, streams: int) -> None:
    first = [Event(s, 1) for s in stream_ids("m", 0, streams)]
    second = [Event(s, 1) for s in stream_ids("m", streams, streams)]
    gc.collect()
    tracemalloc.start()
    empty = tracemalloc.get_traced_memory()[0]
    table = make(streams)
    made = tracemalloc.get_traced_memory()[0] - empty
    for event in first:
        table.seen(event)
    for event in second:
        table.seen(event)
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    size = tracemalloc.get_traced_memory()[0] - empty
    tracemalloc.stop()
    blocks = sum(s.count for s in snapshot.statistics("filename"))
    print(
        f"  {name:22} {size / 1e6:7.2f} MB alive ({made / 1e6:5.2f} MB of it at creation), "
        f"{blocks:>7,} blocks traced, {size / streams:6.1f} B and "
        f"{blocks / streams:4.2f} blocks per stream"
    )
    del table


def timing(make: Table, streams: int, calls: int, kind: str, run: int) -> float:
    table = make(streams)
    for event in [Event(s, 1) for s in stream_ids(f"t{run}", 0, streams)]:
        table.seen(event)
    if kind == "new":
        events = [Event(s, 1) for s in stream_ids(f"t{run}", streams, calls)]
    else:  # the next version of remembered streams, oldest first, round and round
        ids = stream_ids(f"t{run}", 0, streams)
        events = [Event(ids[i % streams], 2 + i // streams) for i in range(calls)]
    seen = table.seen
    gc.collect()
    started = time.process_time()
    for event in events:
        seen(event)
    return (time.process_time() - started) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    print(f"table at its bound, {args.streams:,} streams, after {2 * args.streams:,} seen:")
    for name, make in TABLES.items():
        memory(name, make, args.streams)
    print(f"CPU per seen (µs, process time), {args.pairs} alternated pairs, load {os.getloadavg()}")
    for kind in ("new", "known"):
        results: dict[str, list[float]] = {name: [] for name in TABLES}
        for run in range(args.pairs):
            for name, make in TABLES.items():
                results[name].append(timing(make, args.streams, args.calls, kind, run))
        for name, values in results.items():
            print(
                f"  {kind:5} {name:22} median {statistics.median(values):5.2f} "
                f"(range {min(values):5.2f}-{max(values):5.2f}): "
                + " ".join(f"{v:.2f}" for v in values)
            )
    print(f"load after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

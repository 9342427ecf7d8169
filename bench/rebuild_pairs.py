"""The rebuild in one process and in two (``--processes 2``) alternately on one stack (#12,
Round 26): what `make bench`'s second rebuild (``rebuild_p2``) adds to its time, and how the
two compare, as A/B pairs in both orders (1, 2, 2, 1, 1, 2, ...).

A stack of its own is filled to the benchmark's first growth step (bench/scale.py's
``growth_step``, as `make bench` does before its rebuild), then each rebuild is timed with
the function the benchmark times (``scale.rebuild_rate``: the command's own).

    python -m bench.rebuild_pairs [--events 10000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import scale  # noqa: E402
from bench.stack import running_stack  # noqa: E402


def order(pairs: int) -> list[int]:
    """Processes of each rebuild: 1, 2, 2, 1, 1, 2, ... (``pairs`` pairs, both orders)."""
    return [p for i in range(pairs) for p in ((1, 2) if i % 2 == 0 else (2, 1))]


async def measure(events: int, pairs: int) -> dict[int, list[tuple[float, float, int]]]:
    timed: dict[int, list[tuple[float, float, int]]] = {1: [], 2: []}
    warnings: list[str] = []
    async with running_stack() as stack:
        print(f"filling to {events:,} events ...", flush=True)
        await scale.growth_step(stack, events, 1280, warnings)
        for processes in order(pairs):
            started = time.perf_counter()
            rate, replayed = await scale.rebuild_rate(stack.settings, processes=processes)
            elapsed = time.perf_counter() - started
            timed[processes].append((elapsed, rate, replayed))
            print(
                f"  {processes} process(es): {elapsed:5.2f} s, {rate:,.0f} ev/s over "
                f"{replayed:,} events",
                flush=True,
            )
    for warning in warnings:
        print(f"warning: {warning}")
    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    timed = asyncio.run(measure(args.events, args.pairs))
    for processes, runs in timed.items():
        seconds = [s for s, _, _ in runs]
        rates = [r for _, r, _ in runs]
        print(
            f"{processes} process(es): {min(seconds):.2f} / {statistics.median(seconds):.2f} / "
            f"{max(seconds):.2f} s, {min(rates):,.0f} / {statistics.median(rates):,.0f} / "
            f"{max(rates):,.0f} ev/s (min / median / max)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The growth step's write-path figures with the consumers behind, paused and caught up,
alternately, on one stack (#12, docs/performance.md Round 9).

The benchmark's growth step (bench/scale.py) reads the batch rate and intake's CPU per single
POST at each size. Up to Round 8 it read them while the followup worker worked off the fill's
backlog on the same cores; this separates what the stack's size costs from what the consumers
beside the measure cost. At each step, after the fill (the audit consumer waited for, as the
benchmark did):

- ``behind``: the consumers running, the followup worker still behind (the old reading);
- ``paused``: both consumers stopped (SIGSTOP) for the measure, resumed after;
- ``caught-up``: after both hold every intake event (the new reading), consumers running.

``behind`` and ``paused`` alternate first, then the worker is waited for (timed), then
``caught-up`` and ``paused`` alternate. Each line prints the load average.

    python -m bench.growth_pairs [--steps 10000,100000] [--pairs 2] [--sample 1280]
                                 [--catch-up-limit S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import scale  # noqa: E402
from bench.stack import BenchStack, child_pids, running_stack  # noqa: E402

CONSUMERS = ("followup-worker", "audit-consumer")


def consumer_pids(stack: BenchStack) -> list[int]:
    pids = [pid for c in CONSUMERS for pid in stack.pids.get(c, [])]
    return pids + [child for pid in pids for child in child_pids(pid)]


@contextlib.contextmanager
def paused(stack: BenchStack, pause: bool) -> Iterator[None]:
    """The consumers stopped for the block (resumed however it ends)."""
    pids = consumer_pids(stack) if pause else []
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def one(stack: BenchStack, mode: str, sample: int) -> str:
    share = await scale.followup_share(stack)
    worker_cpu = stack.cpu_seconds("followup-worker")
    with paused(stack, mode == "paused"):
        rate, cpu_ms = await scale.write_path(stack, sample)
    worker_cpu = stack.cpu_seconds("followup-worker") - worker_cpu
    return (
        f"  {mode:9s} worker applied {share:4.2f}: batch {rate:6,.0f} ev/s, "
        f"intake CPU {cpu_ms:.3f} ms per POST; worker CPU during it {worker_cpu:4.1f} s; "
        f"load {os.getloadavg()[0]:.2f}"
    )


async def measure(args: argparse.Namespace) -> None:
    async with running_stack() as stack:
        for events in args.steps:
            started = time.perf_counter()
            await scale.fill_to(stack, events)
            print(f"filled to {events:,} in {time.perf_counter() - started:.1f} s", flush=True)
            await scale.audit_caught_up(stack)
            for _ in range(args.pairs):
                for mode in ("behind", "paused"):
                    print(await one(stack, mode, args.sample), flush=True)
            started = time.perf_counter()
            held = await scale.caught_up(stack, followup=True, within_s=args.catch_up_limit)
            print(
                f"  consumers {'caught up' if held else 'NOT caught up'} in "
                f"{time.perf_counter() - started:.1f} s; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            for _ in range(args.pairs if held else 0):
                for mode in ("caught-up", "paused"):
                    await scale.caught_up(stack, followup=True, within_s=60)
                    print(await one(stack, mode, args.sample), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--steps", type=lambda s: [int(n) for n in s.split(",")], default=[10_000, 100_000]
    )
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--sample", type=int, default=1280, help="single POSTs per reading")
    parser.add_argument(
        "--catch-up-limit", type=float, default=scale.CATCH_UP_LIMIT_S, help="seconds"
    )
    asyncio.run(measure(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

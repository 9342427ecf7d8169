"""Intake CPU per single event, alone (docs/performance.md, #12).

The benchmark's "intake CPU per event" (user + system CPU of every intake process, from
`/proc`, divided by the events answered), without the rest of `make bench`: starts the
benchmark's stack, warms up, then measures single events from 64 connections, a few times.
Unlike `bench.profile_intake` nothing samples the process, so the figure is the process's own.

    python -m bench.intake_cpu [--events 3000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.branchline_measures import mean_group_size, single_posts  # noqa: E402
from bench.stack import running_stack  # noqa: E402


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    async with running_stack() as stack:
        port = stack.settings.intake_port
        await single_posts(port, stack.token, 300)  # warm up (imports, pools, caches)
        for _ in range(args.repeat):
            before = stack.cpu_seconds("intake-api")
            latencies = await single_posts(port, stack.token, args.events)
            used = stack.cpu_seconds("intake-api") - before
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            # one process's groups since it started, warm-up included (the /metrics answer
            # comes from whichever process accepted the connection)
            group = await mean_group_size(port) or float("nan")
            print(
                f"{args.events} events: intake CPU {1000 * used / args.events:.3f} ms per event, "
                f"{latencies.per_s:.0f} ev/s, p50 {latencies.p50_ms:.1f} ms, "
                f"p99 {latencies.p99_ms:.1f} ms, events per group {group:.1f}; "
                f"load average {load}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

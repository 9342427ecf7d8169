"""Where one intake process spends its CPU on `POST /v1/events:batch` (docs/performance.md, #12).

Starts the benchmark's stack with every relay off (nothing is published, so the followup
worker and the audit consumer stay idle), then a second intake process (one process), and
sends it batches of 1,000 (the benchmark's workload: new clients registered), one after
another, after one batch to warm up. Prints the batch rate and the CPU the process used per
event (user + system, from `/proc`). With ``--profile`` the process runs under pyinstrument
and the share of the busy samples per function is written as in `bench.profile_intake`.

    python -m bench.profile_batch [--batches 10] [--profile] [--out bench/profile_batch.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadgen import RawHttpClient  # noqa: E402
from bench.profile_intake import collapsed_stacks, summarise  # noqa: E402
from bench.stack import process_cpu_seconds, running_stack  # noqa: E402
from bench.workload import event_body  # noqa: E402
from branchline_shared.embedded.ports import free_port, wait_for_port  # noqa: E402


def batch_bodies(count: int, per_batch: int) -> list[bytes]:
    run = uuid.uuid4().hex[:8]
    return [
        orjson.dumps({"events": [event_body(b * per_batch + i, run) for i in range(per_batch)]})
        for b in range(count)
    ]


async def send(http: RawHttpClient, bodies: list[bytes]) -> None:
    for body in bodies:
        status, answer = await http.post("/v1/events:batch", body)
        if status != 200 or b'"status":409' in answer or b'"status":422' in answer:
            raise AssertionError(f"batch answered {status}: {answer[:300]!r}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--per-batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profile_batch.txt")
    args = parser.parse_args()
    raw = args.out.with_suffix(".pyisession")
    async with running_stack({"BRANCHLINE_RELAY_ENABLED": "false"}) as stack:
        port = free_port()
        env = {
            **stack.env,
            "BRANCHLINE_INTAKE_PORT": str(port),
            "BRANCHLINE_RELAY_ENABLED": "false",
            "BRANCHLINE_INTAKE_PROCESSES": "1",  # one process, the one measured
            "BRANCHLINE_SHUTDOWN_DRAIN_S": "0",
        }
        profiler = ["-m", "pyinstrument", "-r", "session", "-o", str(raw), "-i", "0.002"]
        command = [
            sys.executable,
            *(profiler if args.profile else []),
            "-m",
            "branchline_cli.main",
            "run",
            "intake-api",
        ]
        measured = subprocess.Popen(command, env=env, start_new_session=True)  # noqa: ASYNC220
        try:
            if not await asyncio.to_thread(wait_for_port, port, timeout_s=60):
                raise RuntimeError("intake did not start")
            async with RawHttpClient("127.0.0.1", port, stack.token) as http:
                await send(http, batch_bodies(1, args.per_batch))  # warm up
                for _ in range(args.repeat):
                    bodies = batch_bodies(args.batches, args.per_batch)
                    events = args.batches * args.per_batch
                    cpu = process_cpu_seconds(measured.pid)
                    started = time.perf_counter()
                    await send(http, bodies)
                    elapsed = time.perf_counter() - started
                    used = process_cpu_seconds(measured.pid) - cpu
                    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                    print(
                        f"{events} events in batches of {args.per_batch}: "
                        f"{events / elapsed:.0f} ev/s, intake CPU "
                        f"{1000 * used / events:.3f} ms per event; load average {load}",
                        flush=True,
                    )
        finally:
            os.killpg(measured.pid, signal.SIGINT)
            await asyncio.to_thread(measured.wait, 60)
    if args.profile:
        args.out.write_text(summarise(collapsed_stacks(raw), top=60))
        print(f"profile: {args.out} (stacks: {raw})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""The consumers' fetch wait against the steady load's lag, in alternation (#12).

For each arm of ``--waits`` (``BRANCHLINE_KAFKA_FETCH_MAX_WAIT_MS``), in turn, ``--rounds``
times (A B C A B C ...): a fresh benchmark stack (``bench.stack.running_stack``, what
``make bench`` starts) with that setting, a warm-up, then ``--windows`` steady windows as the
benchmark measures them (``bench.latency.end_to_end`` at one fixed rate, after the consumers
caught up and a ``VACUUM (ANALYZE)``): accepted -> visible in the followup read model and in
the audit trail, p50 / p99; the followup worker's, the audit consumer's and the broker's CPU
per event over the load. Last, the stack at rest (caught up, nothing sent) for ``--idle``
seconds: the same three processes' CPU per second.

    python -m bench.fetch_wait_pairs [--waits 50,20,10] [--rounds 3] [--rate 1000]
        [--seconds 20] [--windows 2] [--idle 15] [--out /tmp/fetch_wait.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import branchline_measures, latency  # noqa: E402
from bench.stack import running_stack  # noqa: E402

COMPONENTS = ("followup-worker", "audit-consumer", "broker")


async def arm(wait: int, args: argparse.Namespace, out: Path) -> None:
    env = {"BRANCHLINE_KAFKA_FETCH_MAX_WAIT_MS": str(wait)}
    async with running_stack(env) as stack:
        s = stack.settings
        await branchline_measures.single_posts(s.intake_port, stack.token, 640)  # warm up
        for window in range(1, args.windows + 1):
            await latency.drain(s.followup_database_url, s.audit_database_url)
            await latency.vacuum(
                [s.intake_database_url, s.followup_database_url, s.audit_database_url]
            )
            load0 = os.getloadavg()[0]
            cpu0 = {c: stack.cpu_seconds(c) for c in COMPONENTS}
            r = await latency.end_to_end(
                s.intake_port,
                stack.token,
                rate=args.rate,
                duration_s=args.seconds,
                followup_dsn=s.followup_database_url,
                audit_dsn=s.audit_database_url,
            )
            cpu = {c: stack.cpu_seconds(c) - cpu0[c] for c in COMPONENTS}
            us = {c: round(1e6 * v / max(r.answered, 1)) for c, v in cpu.items()}
            line = {
                "kind": "window",
                "wait_ms": wait,
                "window": window,
                "answered": r.answered,
                "followup_p50_ms": round(r.followup_p50_ms),
                "followup_p99_ms": round(r.followup_p99_ms),
                "audit_p50_ms": round(r.audit_p50_ms),
                "audit_p99_ms": round(r.audit_p99_ms),
                "http_p99_ms": round(r.http_p99_ms, 1),
                "poll_window_p99_ms": round(r.poll_window_p99_ms),
                "missing": [r.followup_missing, r.audit_missing],
                "cpu_us_per_event": us,
                "load": [round(load0, 1), round(os.getloadavg()[0], 1)],
                "at": time.strftime("%H:%M:%S", time.gmtime()),
            }
            print(json.dumps(line), flush=True)
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
        await latency.drain(s.followup_database_url, s.audit_database_url)
        await asyncio.sleep(2.0)
        cpu0 = {c: stack.cpu_seconds(c) for c in COMPONENTS}
        t0 = time.perf_counter()
        await asyncio.sleep(args.idle)
        took = time.perf_counter() - t0
        idle = {c: round(1000 * (stack.cpu_seconds(c) - cpu0[c]) / took, 1) for c in COMPONENTS}
        line = {
            "kind": "idle",
            "wait_ms": wait,
            "cpu_ms_per_s": idle,
            "load": round(os.getloadavg()[0], 1),
        }
        print(json.dumps(line), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(line) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waits", default="50,20,10")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--idle", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fetch_wait_pairs.jsonl"))
    args = parser.parse_args()
    waits = [int(w) for w in args.waits.split(",")]
    for _ in range(args.rounds):
        for wait in waits:
            await arm(wait, args, args.out)


if __name__ == "__main__":
    asyncio.run(main())

"""Intake's Python per `POST /v1/events:batch` event in one process, without HTTP or a server
(docs/performance.md, Round 10, #12): `submit_events` on batches of 1,000 new clients (the
benchmark's workload) with the in-memory store, and the decider alone on the same candidates.
Prints the CPU time (``time.process_time``) per event, best and median of ``--rounds``; with
``--profile`` the cProfile of the decider's calls, largest first.

    python -m bench.batch_python [--rounds 15] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from branchline_intake.application.submit import IntakeContext, submit_events  # noqa: E402
from branchline_intake.domain import RecordedDecider  # noqa: E402
from branchline_shared.clock import FixedClock  # noqa: E402
from branchline_shared.crypto.keystore import InMemoryClientKeyStore  # noqa: E402
from branchline_shared.events.envelope import Actor, SubmittedEvent  # noqa: E402
from branchline_shared.eventstore.memory import InMemoryEventStore  # noqa: E402

_NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def items(count: int) -> list[SubmittedEvent]:
    run = uuid.uuid4().hex[:8]
    return [
        SubmittedEvent.model_validate(
            {
                "type": "client.registered",
                "occurred_at": _NOW.isoformat(),
                "client_id": f"C-{run}-{i}",
                "branch_id": "BR-1",
                "channel": "walk_in",
                "actor": {"id": "s-1", "role": "teller"},
                "data": {"client_type": "individual", "rm_id": "rm-1"},
            }
        )
        for i in range(count)
    ]


def submit_cpu(rounds: int, per_batch: int) -> list[float]:
    ctx = IntakeContext(
        store=InMemoryEventStore(),
        clock=FixedClock(_NOW),
        decider=RecordedDecider(),
        topic="t",
        keys=InMemoryClientKeyStore(),
        hash_key=b"k" * 32,
    )
    admin = Actor(id="b", role="admin")
    figures = []
    for _ in range(rounds + 1):
        batch = items(per_batch)
        started = time.process_time()
        asyncio.run(submit_events(ctx, batch, submitted_by=admin, checked=True))
        figures.append((time.process_time() - started) / per_batch * 1e6)
    return figures[1:]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-batch", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        submit_cpu(5, args.per_batch)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        return 0
    figures = submit_cpu(args.rounds, args.per_batch)
    print(
        f"submit_events, {args.per_batch} new clients: best {min(figures):.1f} µs, "
        f"median {statistics.median(figures):.1f} µs CPU per event ({args.rounds} rounds)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

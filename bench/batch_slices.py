"""Where one `POST /v1/events:batch` of 1,000 spends intake's CPU, slice by slice, in one
process (docs/performance.md, Round 16, #12).

The benchmark's body (`bench.workload.event_body`: 1,000 new clients, one branch system's
token) goes through the route's own pieces in the order a request meets them, each timed with
``time.process_time``: the strict input check's parse (`clean_document`), the body model
FastAPI validates (`BatchRequest`), the items' validation (`_submitted_items`), the use case
(`submit_events`) split into what runs before the unit of work and `_record` (locks, reads,
decisions, staging, with the in-memory store), the envelopes' JSON the PostgreSQL store
renders when an event is staged (``model_dump_json``, not part of the in-memory store's
`stage`) and the answer's rendering. No HTTP, no server: the rest of the request's time
(uvicorn, the middleware, the statements) is what `bench.profile_batch` adds.

    python -m bench.batch_slices [--rounds 30] [--per-batch 1000] [--profile]
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
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workload import event_body  # noqa: E402
from branchline_intake.application import submit  # noqa: E402
from branchline_intake.application.submit import IntakeContext  # noqa: E402
from branchline_intake.domain import RecordedDecider  # noqa: E402
from branchline_intake.entrypoints import http  # noqa: E402
from branchline_shared.clock import SystemClock  # noqa: E402
from branchline_shared.crypto.keystore import InMemoryClientKeyStore  # noqa: E402
from branchline_shared.eventstore.memory import InMemoryEventStore  # noqa: E402
from branchline_shared.http.auth import Principal, Role  # noqa: E402
from branchline_shared.http.strict_input import PARSED_BODY, clean_document  # noqa: E402

_CALLER = Principal(subject="bs-1", roles=frozenset({Role.BRANCH_SYSTEM}), branch_id="BR-1")


def _body(per_batch: int) -> bytes:
    run = uuid.uuid4().hex[:8]
    return orjson.dumps({"events": [event_body(i, run) for i in range(per_batch)]})


def _context() -> IntakeContext:
    # A store per batch: the in-memory store reads a stream by scanning every stored event.
    return IntakeContext(
        store=InMemoryEventStore(),
        clock=SystemClock(),
        decider=RecordedDecider(),
        topic="t",
        keys=InMemoryClientKeyStore(),
        hash_key=b"k" * 32,
    )


class _Request:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope


def one_batch(per_batch: int, slices: dict[str, list[float]]) -> None:
    body = _body(per_batch)
    ctx = _context()
    took: dict[str, float] = defaultdict(float)
    clock = time.process_time

    record, submit_events = submit._record, submit.submit_events
    submitted_items = http._submitted_items

    async def timed_record(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return await record(*args, **kwargs)
        finally:
            took["record"] += clock() - started

    async def timed_submit(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return await submit_events(*args, **kwargs)
        finally:
            took["submit"] += clock() - started

    def timed_items(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return submitted_items(*args, **kwargs)
        finally:
            took["items"] += clock() - started

    # The route's module names the use case it calls: each piece is swapped where it is called.
    swapped = [(submit, "_record"), (http, "submit_events"), (http, "_submitted_items")]
    for (module, name), timed in zip(
        swapped, (timed_record, timed_submit, timed_items), strict=True
    ):
        setattr(module, name, timed)
    try:
        started = clock()
        document = clean_document(body)
        took["parse"] = clock() - started
        started = clock()
        batch = http.BatchRequest.model_validate(document)
        took["body model"] = clock() - started
        request = _Request({"type": "http", PARSED_BODY: document})
        started = clock()
        answer = asyncio.run(http.post_batch(ctx, _CALLER, batch, request))  # type: ignore[arg-type]
        took["route"] = clock() - started
    finally:
        for (module, name), original in zip(
            swapped, (record, submit_events, submitted_items), strict=True
        ):
            setattr(module, name, original)
    results = orjson.loads(bytes(answer.body))["results"]
    if [r["status"] for r in results] != [202] * per_batch:
        raise AssertionError(f"not every item accepted: {results[:3]}")
    # The PostgreSQL store renders each staged envelope's JSON (its `stage`); the in-memory
    # one does not, so that is timed here on the same events after the batch.
    staged = [s.event for s in ctx.store._state.events]  # type: ignore[attr-defined]
    started = clock()
    for event in staged:
        event.model_dump_json()
    took["envelope JSON (PostgreSQL's stage)"] = clock() - started
    took["route, rest (checks, answers, render)"] = took["route"] - took["items"] - took["submit"]
    took["submit_events before the unit of work"] = took["submit"] - took["record"]
    for name, seconds in took.items():
        slices[name].append(seconds * 1e6 / per_batch)


_ORDER = [
    "parse",
    "body model",
    "items",
    "submit_events before the unit of work",
    "record",
    "envelope JSON (PostgreSQL's stage)",
    "route, rest (checks, answers, render)",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-batch", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="cProfile of the rounds")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.rounds):
            one_batch(args.per_batch, defaultdict(list))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(45)
        return 0
    slices: dict[str, list[float]] = defaultdict(list)
    one_batch(args.per_batch, defaultdict(list))  # warm up
    for _ in range(args.rounds):
        one_batch(args.per_batch, slices)
    total = 0.0
    for name in _ORDER:
        median = statistics.median(slices[name])
        total += median
        print(
            f"{name:42s} median {median:6.2f} µs per event "
            f"(min {min(slices[name]):6.2f}, max {max(slices[name]):6.2f})"
        )
    print(f"{'sum of the medians':42s} {total:6.2f} µs per event ({args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

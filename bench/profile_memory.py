"""What the consumers keep in memory as the events grow (#12).

Starts an embedded PostgreSQL only (no broker: the Kafka edge is a message list) and drives
one consumer's own handling code with the events the benchmark's growth fill writes (a new
client registered per event), in the batches the consumer gets them:

- ``audit``: the audit consumer's :class:`BatchConsumer` (decoding, the position-jump check,
  the ledger append, 500 per fetch);
- ``followup``: the followup worker's :func:`handle_batch` (decoding, the position-jump check,
  the projection in one transaction per batch of 200).

The same events are written to an intake event store (outbox marked published), so that the
consumer's periodic self-check (:class:`SelfRepair`, every 60 s in the running processes) can
run against the stores as it does there; ``--self-check`` runs it once per ``--check-every``
events (the dead-letter topic, on a broker not started here, counts as empty).

At each step it prints the process's RSS (and its peak, VmHWM) and, with ``--tracemalloc``,
the allocation sites that grew most since the previous step (tracemalloc slows the run about
threefold; RSS then includes its own bookkeeping, so read RSS from a run without it).

    python -m bench.profile_memory --component audit|followup [--steps 10000,50000,100000]
                                   [--self-check] [--check-every 20000] [--tracemalloc]
                                   [--types]

``--types`` prints the live objects (those the collector tracks) grown per step by type, at
no cost during the run.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.branchline_measures import recorded  # noqa: E402
from bench.probe_stack import probe_stack  # noqa: E402
from bench.read_models import applied_reader  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_shared.events.envelope import RecordedEvent  # noqa: E402
from branchline_shared.eventstore.postgres import PostgresEventStore  # noqa: E402
from branchline_shared.kafka.consuming import RawMessage  # noqa: E402
from branchline_shared.kafka.wire import event_headers  # noqa: E402
from branchline_shared.postgres.pool import open_pool  # noqa: E402


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class CountedDeadLetters:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, raw: RawMessage, reason: str) -> None:
        self.sent += 1


class Record:
    """What :class:`BatchConsumer` reads of an aiokafka ``ConsumerRecord``."""

    __slots__ = ("headers", "key", "offset", "partition", "topic", "value")

    def __init__(self, raw: RawMessage) -> None:
        self.topic, self.partition, self.offset = raw.topic, raw.partition, raw.offset
        self.key, self.value, self.headers = raw.key, raw.value, raw.headers


Handler = Callable[[list[RawMessage]], Awaitable[None]]


async def audit_handler(settings: Any) -> tuple[Handler, Any, int, Callable[[], Awaitable[None]]]:
    from branchline_audit.adapters.database import open_role_pool
    from branchline_audit.bootstrap import audit_context, build_consumer, ledger_probe, self_repair
    from branchline_shared.clock import SystemClock

    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=4)
    repair = self_repair(settings, pool)
    consumer = build_consumer(
        settings,
        audit_context(settings, pool, SystemClock()).ledger,
        None,
        SystemClock(),
        repair,
        answering=ledger_probe(pool),
    )
    consumer._dead_letters = CountedDeadLetters()  # type: ignore[assignment]

    async def handle(raws: list[RawMessage]) -> None:
        await consumer._process([Record(r) for r in raws])

    async def check() -> None:
        assert repair is not None
        await repair.check(trigger="periodic", grace_s=0)

    return handle, pool, 500, check


async def followup_handler(
    settings: Any,
) -> tuple[Handler, Any, int, Callable[[], Awaitable[None]]]:
    from branchline_followup.adapters.reconciling import read_models_have
    from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
    from branchline_followup.application.config import policy_from_settings
    from branchline_followup.application.projector import Projection
    from branchline_followup.bootstrap import open_read_model_pool
    from branchline_followup.entrypoints.worker import CONSUMER, handle_batch
    from branchline_shared.reconcile.jumps import PositionJumps
    from branchline_shared.reconcile.running import ConsumerSource
    from branchline_shared.reconcile.self_repair import SelfRepair

    pool = await open_read_model_pool(settings)
    units = PostgresUnitsOfWork(pool)
    projection = Projection(policy_from_settings(settings), task_creations_topic="bench")
    repair = SelfRepair(
        settings,
        ConsumerSource(
            CONSUMER,
            "dlq",
            applied_reader(pool),
            has=lambda ids: read_models_have(pool, ids),
        ),
        interval_s=60,
        grace_s=0,
    )
    jumps = PositionJumps(CONSUMER, repair.position_jumped)
    dead = CountedDeadLetters()

    async def handle(raws: list[RawMessage]) -> None:
        await handle_batch(raws, units, dead, projection, jumps)  # type: ignore[arg-type]

    async def check() -> None:
        await repair.check(trigger="periodic", grace_s=0)

    return handle, pool, settings.followup_worker_batch_size, check


async def store_events(pool: Any, events: list[RecordedEvent]) -> None:
    """Into intake's store as intake writes them, the outbox published (as the relay leaves
    it), so the self-check finds them there."""
    store = PostgresEventStore(pool)
    async with store.unit_of_work() as uow:
        for event in events:
            uow.stage(event, topic="intake.events", submission_hash=None)
        await uow.commit()
    await pool.execute(
        "UPDATE es_outbox SET published_at = now() - interval '1 hour' WHERE published_at IS NULL"
    )


def object_counts() -> collections.Counter[str]:
    """Live objects the collector tracks, by type (no cost while the consumer runs, unlike
    tracemalloc)."""
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int) -> None:
    keep = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "traceback")
    for stat in stats[:top]:
        frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback]
        print(
            f"    {stat.size_diff / 1e6:+8.2f} MB {stat.count_diff:+8d} blocks  "
            + " <- ".join(reversed(frames[-4:]))
        )


def step_counts(steps: str) -> list[int]:
    """``--steps``: the event counts to report at, in increasing order."""
    return sorted(int(s) for s in steps.split(","))


async def measure(args: argparse.Namespace, base: Path) -> None:
    from branchline_shared.reconcile import running

    async def no_dead_letters(*_: Any, **__: Any) -> set[uuid.UUID]:
        return set()

    running.dead_lettered_ids = no_dead_letters  # no broker here

    steps = step_counts(args.steps)
    # The broker address is never used: messages are handed to the handlers directly.
    # the measured component's database migrated as it migrates it (by probe_stack, #12)
    async with probe_stack(base, migrated=("eventstore", args.component)) as stack:
        settings = stack.settings
        await stack.database("followup", migrated="eventstore")  # its store (the audit run's)
        intake = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
        make = audit_handler if args.component == "audit" else followup_handler
        handle, pool, batch, check = await make(settings)
        run, done, position, checked = uuid.uuid4().hex[:8], 0, 0, 0
        if args.tracemalloc:
            tracemalloc.start(args.frames)
        previous = tracemalloc.take_snapshot() if args.tracemalloc else None
        counted = object_counts() if args.types else None
        started = time.perf_counter()
        print(
            f"{args.component}: batches of {batch}, self-check "
            f"{f'every {args.check_every} events' if args.self_check else 'off'}; "
            f"RSS at start {rss_mb()[0]:.1f} MB",
            flush=True,
        )
        for step in steps:
            while done < step:
                now = datetime.now(UTC)
                events = [recorded(done + i, run, now) for i in range(min(batch, step - done))]
                if args.self_check:
                    await store_events(intake, events)
                raws = []
                for event in events:
                    position += 1
                    raws.append(
                        RawMessage(
                            "intake.events",
                            position % 12,
                            position,
                            event.subject_id.encode(),
                            event.model_dump_json().encode(),
                            event_headers(event, position),
                        )
                    )
                await handle(raws)
                done += len(events)
                if args.self_check and done - checked >= args.check_every:
                    checked = done
                    await check()
            gc.collect()
            rss, peak = rss_mb()
            print(
                f"  {step:>9,} events: RSS {rss:7.1f} MB, peak {peak:7.1f} MB "
                f"({time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            if counted is not None:
                now_counted = object_counts()
                grown = (now_counted - counted).most_common(args.top)
                print("    objects grown: " + ", ".join(f"{t} +{n}" for t, n in grown))
                counted = now_counted
            if previous is not None:
                snapshot = tracemalloc.take_snapshot()
                top_growth(previous, snapshot, args.top)
                previous = snapshot
        await pool.close()
        await intake.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--component", choices=("audit", "followup"), required=True)
    parser.add_argument("--steps", default="10000,50000,100000")
    parser.add_argument("--self-check", action="store_true")
    parser.add_argument("--check-every", type=int, default=20_000)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--types", action="store_true", help="live objects grown, by type")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    return run_in_scratch(measure, args, "bench-memory-")


if __name__ == "__main__":
    sys.exit(main())

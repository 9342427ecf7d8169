"""How many events a lagging consumer's periodic self-check re-queues (#12).

Starts an embedded PostgreSQL and tansu, fills intake's event store with ``--events`` events
(a new client registered per event, the benchmark's growth fill) and publishes them through
the real outbox relay (which records each row's partition and offset). A consumer group then
stands for a consumer that lags: its committed offsets are ``--reached`` of the way into each
partition, and it applied every event before them except ``--skipped`` (events it really
missed). Every row is dated published an hour ago, far beyond the grace period, as after a
fill the consumer is still working through. Then one periodic self-check runs each way:

- ``by consumer progress`` (now): the check reads the group's committed offsets;
- ``by grace period`` (before #12): the same check without the group.

It prints, for each, the events re-queued, those left as not reached, and the check's time.
The progress check runs first and its re-queued rows are removed before the grace check, so
both see the same store.

    python -m bench.profile_self_check [--events 60000] [--reached 0.953] [--skipped 5]
                                       [--analyze]

``--analyze`` analyses the outbox before the checks (as autovacuum does some time after a
fill): without it, the repair's look-up of each event's key was planned without statistics.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402


def committed_offsets(
    positions: dict[uuid.UUID, tuple[int, int]], reached: float
) -> dict[int, int]:
    """The offset a consumer group ``reached`` of the way into each partition has committed."""
    ends: dict[int, int] = {}
    for partition, offset in positions.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return {p: int(end * reached) for p, end in ends.items()}


async def commit_group(settings: Any, topics: Any, group: str, committed: dict[int, int]) -> None:
    """Commits ``committed`` for ``group`` on intake's event topic, as a consumer would."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from branchline_shared.kafka.starting import closed, start_or_close

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await start_or_close(consumer)
    try:
        tps = {p: TopicPartition(topics.intake_events.name, p) for p in committed}
        consumer.assign(list(tps.values()))
        await consumer.commit({tps[p]: o for p, o in committed.items()})
    finally:
        await closed(consumer)


def bench_source(
    topics: Any, has: Callable[[Sequence[uuid.UUID]], Awaitable[set[uuid.UUID]]], group: str | None
) -> Any:
    """The consumer a bench self-check asks: ``has`` says what it applied; nothing else."""
    from branchline_shared.reconcile.running import ConsumerSource

    async def everything() -> list[Any]:
        raise AssertionError("not asked by a self-check")

    return ConsumerSource(
        "bench-consumer",
        topics.audit_consumer_dlq.name,
        everything,
        has=has,
        group_id=group,
        topics=tuple(topics.event_topics()),
    )


async def filled_and_published(
    settings: Any, events: int, *, analyze: bool
) -> dict[uuid.UUID, tuple[int, int]]:
    """``events`` events filled into intake's store and published by the real relay (each
    one's partition and offset), saying how long that took."""
    from tests.support.published import published

    started = time.perf_counter()
    positions = await published(settings, events, analyze=analyze)
    print(
        f"filled and published {len(positions)} events in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return positions


async def no_dead_letters(*_: object, **__: object) -> set[uuid.UUID]:
    return set()


async def measure(args: argparse.Namespace, base: Path) -> None:
    from branchline_shared.kafka.topics import declare_topics
    from branchline_shared.postgres.pool import open_pool
    from branchline_shared.reconcile import self_repair
    from branchline_shared.reconcile.self_repair import SelfRepair

    async with probe_stack(base, broker=True) as stack:
        settings = stack.settings
        topics = declare_topics(settings)
        positions = await filled_and_published(settings, args.events, analyze=args.analyze)
        committed = committed_offsets(positions, args.reached)
        passed = [e for e, (p, o) in positions.items() if o < committed[p]]
        skipped = set(random.Random(7).sample(passed, args.skipped))
        applied = set(passed) - skipped
        group = "bench-lagging-consumer"
        await commit_group(settings, topics, group, committed)
        print(
            f"consumer reached {len(passed)} ({len(passed) / len(positions):.1%}), applied "
            f"{len(applied)}, skipped {len(skipped)}, "
            f"not reached {len(positions) - len(passed)}",
            flush=True,
        )

        async def has(ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
            return applied & set(ids)

        self_repair.dead_lettered_among = no_dead_letters  # type: ignore[attr-defined]
        pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
        for label, group_id in (("by consumer progress", group), ("by grace period", None)):
            check = SelfRepair(
                settings,
                bench_source(topics, has, group_id),
                interval_s=60,
                grace_s=settings.reconcile_grace_s,
            )
            started = time.perf_counter()
            requeued = await check.check()
            took = time.perf_counter() - started
            print(
                f"{label}: re-queued {requeued} "
                f"(of them skipped: {len(skipped)}), not reached {check.not_reached}, "
                f"check {took:.2f} s",
                flush=True,
            )
            await pool.execute("DELETE FROM es_outbox WHERE published_at IS NULL")
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument(
        "--reached", type=float, default=0.953, help="how far into each partition it read"
    )
    parser.add_argument("--skipped", type=int, default=5)
    parser.add_argument(
        "--analyze", action="store_true", help="ANALYZE the outbox before the checks"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("BRANCHLINE_LOG_LEVEL", "WARNING")
    return run_in_scratch(measure, args, "profile-self-check-")


if __name__ == "__main__":
    raise SystemExit(main())

"""What judging order costs the followup worker's periodic self-check (#12).

Starts an embedded PostgreSQL and tansu, fills intake's store with ``--events`` client
registrations published by the real relay (``bench.profile_self_check``'s fill), migrates a
followup database and records every event applied by the read models and kept in its client's
journal (as the worker does), plus ``--products`` product events applied and not kept (what
the order check judges). Then ``--pairs`` pairs of periodic self-checks, in ABBA order: A
without the order check (the check as it was), B with it (the worker's wiring:
``read_models_unordered``, ``read_models_applied_among``). Prints each check's time and the
range of each side. ``--full-scan-every 1000``: each side's first check (full) is untimed and
the timed ones are incremental, the order step reading only what was applied since its mark.

    python -m bench.profile_self_check_order [--events 20000] [--products 20] [--pairs 4]
        [--full-scan-every 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_self_check import no_dead_letters  # noqa: E402
from bench.read_models import applied_reader  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402


async def applied_by_the_read_models(settings: Any, events: Sequence[uuid.UUID]) -> None:
    """Every one of ``events`` applied and kept in its client's journal, in order."""
    from branchline_shared.postgres.pool import open_pool

    pool = await open_pool(settings.followup_database_url, min_size=1, max_size=1)
    try:
        await pool.execute(
            "INSERT INTO fu_read.fu_applied_events (event_id, type, source, global_position) "
            "SELECT e, 'client.registered', 'intake', n FROM unnest($1::uuid[]) "
            "WITH ORDINALITY AS u(e, n)",
            list(events),
        )
        await pool.execute(
            "INSERT INTO fu_read.fu_client_events "
            "(event_id, client_id, source, global_position, recorded_ms, envelope) "
            "SELECT e, 'C-' || n, 'intake', n, n, '{}'::jsonb FROM unnest($1::uuid[]) "
            "WITH ORDINALITY AS u(e, n)",
            list(events),
        )
        await pool.execute("ANALYZE fu_read.fu_applied_events, fu_read.fu_client_events")
    finally:
        await pool.close()


async def products_applied(settings: Any, count: int) -> None:
    """``count`` product events stored by intake and applied by the read models, not kept."""
    from tests.integration.test_reconcile import product_event

    from branchline_shared.eventstore.postgres import PostgresUnitOfWork
    from branchline_shared.kafka.topics import declare_topics
    from branchline_shared.postgres.pool import open_pool

    topic = declare_topics(settings).intake_events.name
    events = [product_event(v, 0x7000 + v) for v in range(1, count + 1)]
    intake = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    try:
        async with intake.acquire() as conn, conn.transaction():
            uow = PostgresUnitOfWork(conn)
            await uow.lock_streams([events[0].stream_id])
            for event in events:
                uow.stage(event, topic=topic, submission_hash=None)
            await uow.commit()
            await conn.execute("UPDATE es_outbox SET published_at = now() - interval '1 hour'")
    finally:
        await intake.close()
    followup = await open_pool(settings.followup_database_url, min_size=1, max_size=1)
    try:
        await followup.execute(
            "INSERT INTO fu_read.fu_applied_events (event_id, type, source) "
            "SELECT e, 'product.rerated', 'intake' FROM unnest($1::uuid[]) AS u(e)",
            [e.event_id for e in events],
        )
    finally:
        await followup.close()


def worker_source(pool: Any, topics: Any, *, order: bool) -> Any:
    from branchline_followup.adapters.reconciling import (
        read_models_applied_among,
        read_models_have,
        read_models_unordered,
    )
    from branchline_shared.reconcile.running import ConsumerSource

    extra: dict[str, Any] = (
        {
            "unordered": lambda after, limit: read_models_unordered(pool, after, limit),
            "applied_among": lambda ids: read_models_applied_among(pool, ids),
        }
        if order
        else {}
    )
    return ConsumerSource(
        "bench-followup",
        topics.followup_worker_dlq.name,
        applied_reader(pool),
        has=lambda ids: read_models_have(pool, ids),
        **extra,
    )


async def measure(args: argparse.Namespace, base: Path) -> None:
    from tests.support.published import published

    from branchline_followup.bootstrap import open_read_model_pool
    from branchline_shared.kafka.topics import declare_topics
    from branchline_shared.reconcile import self_repair
    from branchline_shared.reconcile.self_repair import SelfRepair

    async with probe_stack(base, broker=True, migrated=("followup",)) as stack:
        settings = stack.settings
        topics = declare_topics(settings)
        positions = await published(settings, args.events, analyze=True)
        await applied_by_the_read_models(settings, list(positions))
        await products_applied(settings, args.products)
        self_repair.dead_lettered_among = no_dead_letters  # type: ignore[attr-defined]
        pool = await open_read_model_pool(settings)
        checks = {
            side: SelfRepair(
                settings,
                worker_source(pool, topics, order=side == "B"),
                interval_s=60,
                grace_s=settings.reconcile_grace_s,
                full_scan_every=args.full_scan_every,
            )
            for side in ("A", "B")
        }
        for check in checks.values():  # each side's first check is full (mark unknown)
            await check.check()
        times: dict[str, list[float]] = {"A": [], "B": []}
        for side in "ABBA" * args.pairs:
            started = time.perf_counter()
            await checks[side].check()
            times[side].append(time.perf_counter() - started)
            print(f"{side}: {times[side][-1] * 1000:.0f} ms", flush=True)
        await pool.close()
        for side, label in (("A", "without order"), ("B", "with order")):
            ms = [t * 1000 for t in times[side]]
            print(f"{label}: {min(ms):.0f}-{max(ms):.0f} ms ({len(ms)} checks)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument(
        "--full-scan-every",
        type=int,
        default=1,
        help="1: every check reads the whole log (the worst case); more: the checks timed "
        "after each side's first are incremental (the order step from its mark, #12)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("BRANCHLINE_LOG_LEVEL", "WARNING")
    return run_in_scratch(measure, args, "profile-self-check-order-")


if __name__ == "__main__":
    raise SystemExit(main())

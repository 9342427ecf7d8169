"""What a full check of the followup worker's self-check order step holds in memory (#12).

Starts an embedded PostgreSQL (no broker: the order step asks none), fills intake's store
with ``--events`` product events (``--versions`` a product, so events / versions streams,
written by SQL: the probe is about the reading side) and records them in the followup read
models as applied and not kept (what the order step judges), every ``--late-every``-th stream
with its last two versions applied the wrong way round. Then ``--checks`` full order checks
(``OrderWatch.check(full=True)``, the worker's wiring: ``read_models_unordered``,
``read_models_applied_among``), each under tracemalloc: prints each check's peak traced
memory, its time and what it found. Runs on the code of the checkout it is started from (old
code: a scratch worktree of main with this file copied in; the probe calls the order step's
``unordered`` with a page limit only where the code takes one).

    python -m bench.profile_self_check_order_memory [--events 20000] [--versions 10]
        [--late-every 100] [--checks 3]
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.read_models import applied_reader  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402


async def history(settings: Any, events: int, versions: int, late_every: int) -> None:
    """Product streams in intake's store, applied by the read models (not kept)."""
    from branchline_shared.postgres.pool import open_pool

    intake = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    try:
        await intake.execute(
            "INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id, "
            "occurred_at, recorded_at, envelope) "
            "SELECT md5('p' || n)::uuid, 'product-P-' || ((n - 1) / $2), ((n - 1) % $2) + 1, "
            "'product.rerated', NULL, now(), now(), '{}'::jsonb "
            "FROM generate_series(1, $1) AS n",
            events,
            versions,
        )
        await intake.execute("ANALYZE es_events")
    finally:
        await intake.close()
    followup = await open_pool(settings.followup_database_url, min_size=1, max_size=1)
    try:
        # applied in log order, but in every late_every-th stream the last two versions
        # swapped: its last version applied before the one below it (out of order)
        await followup.execute(
            "INSERT INTO fu_read.fu_applied_events (event_id, type, source, global_position) "
            "SELECT md5('p' || n)::uuid, 'product.rerated', 'intake', n "
            "FROM generate_series(1, $1) AS n "
            "ORDER BY CASE WHEN ((n - 1) / $2) % $3 = 0 AND (n - 1) % $2 >= $2 - 2 "
            "THEN n + CASE WHEN (n - 1) % $2 = $2 - 1 THEN -1.5 ELSE 0 END ELSE n END",
            events,
            versions,
            late_every,
        )
        await followup.execute("ANALYZE fu_read.fu_applied_events")
    finally:
        await followup.close()


def order_watch(pool: Any) -> Any:
    from branchline_followup.adapters.reconciling import (
        read_models_applied_among,
        read_models_unordered,
    )
    from branchline_shared.reconcile.ordering import OrderWatch
    from branchline_shared.reconcile.running import ConsumerSource

    paged = "limit" in inspect.signature(read_models_unordered).parameters

    async def unordered(after: int, limit: int | None = None) -> Any:
        if paged:
            return await read_models_unordered(pool, after, limit)
        return await read_models_unordered(pool, after)

    consumer = ConsumerSource(
        "bench-followup",
        "unused-dlq",
        applied_reader(pool),
        unordered=unordered,
        applied_among=lambda ids: read_models_applied_among(pool, ids),
    )
    return OrderWatch(consumer), paged


async def measure(args: argparse.Namespace, base: Path) -> None:
    from branchline_followup.bootstrap import open_read_model_pool
    from branchline_shared.reconcile.running import store_sources

    async with probe_stack(base, migrated=("eventstore", "followup")) as stack:
        settings = stack.settings
        await history(settings, args.events, args.versions, args.late_every)
        pool = await open_read_model_pool(settings)
        try:
            watch, paged = order_watch(pool)
            stores = store_sources(settings)
            peaks, times = [], []
            for n in range(args.checks):
                tracemalloc.start()
                started = time.perf_counter()
                found = await watch.check(stores, full=True)
                elapsed = time.perf_counter() - started
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                peaks.append(peak / 2**20)
                times.append(elapsed * 1000)
                print(
                    f"check {n + 1}: peak {peaks[-1]:.1f} MB, {times[-1]:.0f} ms, "
                    f"{len(found)} out of order",
                    flush=True,
                )
                del found
        finally:
            await pool.close()
        print(
            f"{'paged' if paged else 'whole'} {args.events} events: peak "
            f"{min(peaks):.1f}/{statistics.median(peaks):.1f}/{max(peaks):.1f} MB, "
            f"time {min(times):.0f}/{statistics.median(times):.0f}/{max(times):.0f} ms "
            f"(min/median/max of {args.checks})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--late-every", type=int, default=100)
    parser.add_argument("--checks", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("BRANCHLINE_LOG_LEVEL", "WARNING")
    return run_in_scratch(measure, args, "profile-self-check-order-memory-")


if __name__ == "__main__":
    raise SystemExit(main())

"""How long a rebuild's swap reads followup's recent store events, as the store grows (#12).

The swap (``application/rebuild.py``), holding the swap lock that every live writer waits
for, reads followup's own events recorded in the last minutes or not published yet
(:data:`~branchline_followup.adapters.rebuild_target.STORE_EVENTS_NOT_ON_KAFKA`). Starts an
embedded PostgreSQL only, fills followup's event store with synthetic published
``followup.task_created`` rows (≈ 700 bytes of envelope each, recorded over the last 30 days)
up to each size given, analyses it, then times the statement three times and prints its plan.

    python -m bench.profile_swap_read [--rows 100000,1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters.rebuild_target import (  # noqa: E402
    RECENT_STORE_EVENTS,
    STORE_EVENTS_NOT_ON_KAFKA,
)

_FILL = """
WITH ev AS (
    INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id, occurred_at,
                           recorded_at, envelope)
    SELECT gen_random_uuid(), 'followup-task-' || g, 1, 'followup.task_created',
           'C-' || (g % 50000), now() - interval '30 days' + g * interval '1 ms',
           now() - interval '30 days' + g * interval '1 ms',
           jsonb_build_object('type', 'followup.task_created', 'pad', repeat('x', 600), 'g', g)
    FROM generate_series($1::bigint, $2::bigint) g
    RETURNING event_id)
INSERT INTO es_outbox (event_id, topic, message_key, published_at)
SELECT event_id, 'followup.events', 'k', now() FROM ev
"""


async def measure(args: argparse.Namespace, base: Path) -> None:
    import asyncpg

    async with probe_stack(base, migrated=("followup",)) as stack:
        conn = await asyncpg.connect(stack.dsn("followup"))
        try:
            filled = 0
            for rows in args.rows:
                started = time.perf_counter()
                await conn.execute(_FILL, filled + 1, rows)
                filled = rows
                await conn.execute("ANALYZE es_events; ANALYZE es_outbox")
                print(
                    f"{rows} events in the store (filled in {time.perf_counter() - started:.1f} s)"
                )
                since = await conn.fetchval("SELECT now() - $1::interval", RECENT_STORE_EVENTS)
                for _ in range(3):
                    started = time.perf_counter()
                    found = await conn.fetch(STORE_EVENTS_NOT_ON_KAFKA, since)
                    elapsed = 1000 * (time.perf_counter() - started)
                    print(f"  the swap's read: {elapsed:.1f} ms, {len(found)} rows")
                plan = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS) " + STORE_EVENTS_NOT_ON_KAFKA, since
                )
                print("\n".join(f"    {r[0]}" for r in plan))
        finally:
            await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rows",
        type=lambda text: sorted(int(n) for n in text.split(",")),
        default=[100_000, 1_000_000],
        help="store sizes, in events, comma-separated",
    )
    return run_in_scratch(measure, parser.parse_args(), "bench-swap-read-")


if __name__ == "__main__":
    sys.exit(main())

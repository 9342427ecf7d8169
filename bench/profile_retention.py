"""What retention's candidate read costs over a long ledger with few expired entries (#12).

Starts an embedded PostgreSQL only, appends ``--entries`` events to a ledger (the first
``--expired`` of them, a closed client's, appended eleven years ago: past every profile; the
rest now), then runs the first page of retention's read (``expired_candidates``: the cutoff,
after position 0, 5,000 rows) under EXPLAIN (ANALYZE, BUFFERS), on its custom plan and on its
generic plan (the one asyncpg's prepared statement switches to after five runs), for the
statement paging by position (before #12's keyset) and the one paging in the index's
(appended_at, position) order, alternated (old new new old ...). Prints the shared buffers each
touched (hit + read: the pages read), the rows and the execution time.

    python -m bench.profile_retention [--entries 100000] [--expired 100] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.audit.audit_support import (  # noqa: E402
    T0,
    event,
    lifecycle_event,
    random_events,
)

from bench.scratch import embedded_postgres, run_in_scratch  # noqa: E402
from branchline_audit.adapters import ledger as ledger_module  # noqa: E402
from branchline_audit.adapters.database import open_role_pool, prepare_database  # noqa: E402
from branchline_audit.adapters.ledger import PostgresLedger  # noqa: E402
from branchline_audit.bootstrap import retention_policy  # noqa: E402

OLD = (
    f"SELECT {ledger_module._READ_COLUMNS} FROM audit_ledger "
    "WHERE pruned_at IS NULL AND appended_at < $1 AND position > $2 "
    "ORDER BY position LIMIT $3"
)
"""The read before #12's keyset: by position, filtering on appended_at."""
NEW = ledger_module._EXPIRED_CANDIDATES


async def explain(conn: Any, statement: str, values: str, generic: bool) -> tuple[int, int, float]:
    """Shared buffers touched, rows and execution ms of one run of ``statement``."""
    async with conn.transaction():
        mode = "force_generic_plan" if generic else "force_custom_plan"
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE retention_probe AS {statement}")
        try:
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE retention_probe({values})"
            )
        finally:
            await conn.execute("DEALLOCATE retention_probe")
    top = json.loads(raw)[0]
    plan = top["Plan"]
    touched = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    return touched, plan["Actual Rows"], top["Execution Time"]


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with embedded_postgres(base) as (server, settings):
        from tests.support.stack import Infra

        infra = Infra(server.url("postgres"), "127.0.0.1:9")
        own = settings.model_copy(
            update={"audit_database_url": infra.database_url(f"ret_{uuid.uuid4().hex[:8]}")}
        )
        await prepare_database(own)
        pool = await open_role_pool(own, own.audit_db_writer_role, min_size=1, max_size=2)
        try:
            ledger = PostgresLedger(pool)
            old_time = T0 - timedelta(days=11 * 365)
            expired = [event(i, client_id="C-GONE") for i in range(args.expired - 1)]
            expired.append(
                lifecycle_event(9, "client.account_closed", client_id="C-GONE", at=old_time)
            )
            await ledger.append(expired, now=old_time)
            rng = random.Random(12)
            for start in range(0, args.entries - args.expired, 500):
                count = min(500, args.entries - args.expired - start)
                await ledger.append(random_events(count, rng, start), now=T0)
        finally:
            await pool.close()
        conn = await asyncpg.connect(own.audit_database_url)
        try:
            await conn.execute("VACUUM ANALYZE audit_ledger")
            pages = await conn.fetchval(
                "SELECT pg_relation_size('audit_ledger') / current_setting('block_size')::int"
            )
            cutoff = max(retention_policy(own).cutoffs(T0).values())
            values = f"'{cutoff.isoformat()}'::timestamptz, 0, 5000"
            print(
                f"{args.entries:,} entries ({pages:,} heap pages), {args.expired} expired; "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            results: dict[tuple[str, bool], list[tuple[int, int, float]]] = {}
            order = ["old", "new", "new", "old"] * ((args.pairs + 1) // 2)
            for name in order[: 2 * args.pairs]:
                statement = OLD if name == "old" else NEW
                for generic in (False, True):
                    results.setdefault((name, generic), []).append(
                        await explain(conn, statement, values, generic)
                    )
            for (name, generic), runs in sorted(results.items()):
                touched = [r[0] for r in runs]
                ms = [r[2] for r in runs]
                print(
                    f"{name:>3} {'generic' if generic else 'custom ':7}: rows {runs[0][1]:.0f}, "
                    f"buffers median {statistics.median(touched):,.0f} "
                    f"({min(touched):,}-{max(touched):,}), "
                    f"ms median {statistics.median(ms):.2f} ({min(ms):.2f}-{max(ms):.2f})",
                    flush=True,
                )
        finally:
            await conn.close()
        print(f"load {os.getloadavg()[0]:.2f} at end")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--expired", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    return run_in_scratch(measure, args, "bench-retention-")


if __name__ == "__main__":
    sys.exit(main())

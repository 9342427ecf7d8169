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
        [--active-old 0] [--run-pairs 0]

``--active-old N`` appends N more entries eleven years ago, of clients still active (never
due); ``--run-pairs P`` then times whole dry-run prunes (``prune_expired``), P pairs alternated
(all all some some all ...): "all" reads every candidate before the cutoff (the read before
Round 25), "some" only those without a client or of a client whose relationship ended before
the cutoff (Round 25).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import sys
import time
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

from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters import ledger as ledger_module  # noqa: E402
from branchline_audit.adapters.database import open_role_pool  # noqa: E402
from branchline_audit.adapters.ledger import PostgresLedger  # noqa: E402
from branchline_audit.application.pruning import prune_expired  # noqa: E402
from branchline_audit.application.signed_leaves import refuse_unsigned  # noqa: E402
from branchline_audit.bootstrap import audit_context, retention_policy  # noqa: E402
from branchline_audit.domain.verification import StoredEntry  # noqa: E402
from branchline_shared.clock import FixedClock  # noqa: E402

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


class EveryCandidate(PostgresLedger):
    """The ledger as retention read it before Round 25: every candidate, whatever its client."""

    async def expired_candidates(
        self, *, before: Any, after_position: int, limit: int, clients: Any = None
    ) -> list[StoredEntry]:
        return await super().expired_candidates(
            before=before, after_position=after_position, limit=limit
        )


async def time_runs(pool: Any, settings: Any, pairs: int) -> None:
    """Whole dry-run prunes, the read of every candidate ("all") against the read of those
    that can be due ("some"), alternated; wall ms and what each decided."""
    ledgers = {"all": EveryCandidate(pool), "some": PostgresLedger(pool)}
    # held against the signed checkpoints as the service's ledger is (D-11): a bare ledger
    # refuses to read the holds (UncheckedFacts)
    audit = audit_context(settings, pool, FixedClock(T0))
    for ledger in ledgers.values():
        ledger.hold_facts_to(functools.partial(refuse_unsigned, audit))
    policy = retention_policy(settings)
    times: dict[str, list[float]] = {"all": [], "some": []}
    decided: dict[str, set[int]] = {"all": set(), "some": set()}
    for name in (["all", "some", "some", "all"] * pairs)[: 2 * pairs]:
        started = time.perf_counter()
        outcome = await prune_expired(
            ledgers[name], policy, FixedClock(T0), actor_id="bench", dry_run=True
        )
        times[name].append((time.perf_counter() - started) * 1000)
        decided[name].add(outcome.pruned)
    for name, ms in times.items():
        print(
            f"run {name:>4}: pruned {sorted(decided[name])}, ms median "
            f"{statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}), runs {len(ms)}",
            flush=True,
        )


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base, migrated=("audit",)) as stack:
        own = stack.settings
        pool = await open_role_pool(own, own.audit_db_writer_role, min_size=1, max_size=2)
        try:
            ledger = PostgresLedger(pool)
            old_time = T0 - timedelta(days=11 * 365)
            expired = [event(i, client_id="C-GONE") for i in range(args.expired - 1)]
            expired.append(
                lifecycle_event(9, "client.account_closed", client_id="C-GONE", at=old_time)
            )
            await ledger.append(expired, now=old_time)
            for start in range(0, args.active_old, 500):
                count = min(500, args.active_old - start)
                await ledger.append(
                    [
                        event(10_000_000 + start + i, client_id=f"C-ACTIVE-{(start + i) % 997}")
                        for i in range(count)
                    ],
                    now=old_time,
                )
            rng = random.Random(12)
            for start in range(0, args.entries - args.expired, 500):
                count = min(500, args.entries - args.expired - start)
                await ledger.append(random_events(count, rng, start), now=T0)
        finally:
            await pool.close()
        if args.run_pairs:
            await asyncpg_vacuum(own.audit_database_url)
            pool = await open_role_pool(own, own.audit_db_writer_role, min_size=1, max_size=2)
            try:
                print(
                    f"{args.entries + args.active_old:,} entries, {args.expired} due, "
                    f"{args.active_old:,} old of active clients; load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                await time_runs(pool, own, args.run_pairs)
            finally:
                await pool.close()
            print(f"load {os.getloadavg()[0]:.2f} at end")
            return
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


async def asyncpg_vacuum(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE audit_ledger")
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--expired", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--active-old", type=int, default=0)
    parser.add_argument("--run-pairs", type=int, default=0)
    args = parser.parse_args()
    return run_in_scratch(measure, args, "bench-retention-")


if __name__ == "__main__":
    sys.exit(main())

"""A refused checkpointer round's time and statements by the number of signed checkpoints
(#12, Round 33; Round 32 made a refusal name where the rewrite lies by halving the
checkpoints below the refused one, ``signed_leaves._last_holding_below``).

Starts an embedded PostgreSQL only and fills a ledger of ``--entries`` entries as the export
probes do (``bench.export_ledger``), signs a checkpoint at every ``--finest`` entries (kept
aside), then rewrites every entry hash from the ledger's middle on (a re-chaining rewrite as
the tamper tests make it, hashes only: the stored tree is left, so every signed leaf from
there fails its proof). For each count of ``--checkpoints`` (default 10, 1,000, 10,000), the
checkpoints table holds that many of the signed ones, evenly spaced, the last ``--unsigned``
entries unsigned (so a round is due), and ``checkpointing.checkpoint_if_due`` (one
checkpointer round; it raises the refusal) is timed:

``first``: the process's first refused round (no leaf proven yet: every leaf the halving
meets is proven against its checkpoint's signed root);
``later``: the next ``--rounds`` rounds of the same process, median [min-max] (the holding
leaves are kept as proven; the failing ones are not, so they are proven again every round;
since Round 34 a later round checks the pair of checkpoints the first located the rewrite
between instead of halving them again; since Round 35 a failing proof's path is read with its
leaf and its note's signature checked once per process).

``hinted``: ``--hinted`` first rounds of fresh processes after the first stored where it
located the rewrite (Round 36, ``audit_refusal_hints``), median [min-max]: each forgets every
proven leaf, kept pair and opened note, reads the stored hint and proves its pair instead of
halving (Round 37; ``--hinted 0`` on code before Round 36, which has no such table). Each
count starts with no hint stored (the table emptied behind the ledger's back), so its
``first`` round halves and stores one.

With each, the statements the round ran (asyncpg's query logger on the one-connection pool),
the leaves kept as proven, and ``checkpoints.all()`` (the halving's read of every checkpoint)
timed alone, median of 5. Alternates nothing: one code, counts compared (Round 34 ran this file
on both codes, ABBA).

    python -m bench.profile_refused_rounds [--entries 20000] [--rounds 20] [--hinted 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bench.export_ledger import T0, append_random_entries  # noqa: E402
from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters.database import open_role_pool  # noqa: E402
from branchline_audit.application import checkpointing  # noqa: E402
from branchline_audit.application.context import AuditContext  # noqa: E402
from branchline_audit.bootstrap import audit_context  # noqa: E402
from branchline_audit.domain.note import sign_checkpoint  # noqa: E402
from branchline_audit.domain.verification import AlteredEntry  # noqa: E402
from branchline_shared.clock import FixedClock  # noqa: E402

TIMEOUT_S = 600.0


@asynccontextmanager
async def ledger(base: Path, entries: int) -> AsyncIterator[tuple[AuditContext, Any, Any]]:
    """The audit context (a one-connection writer pool, a round due whenever an entry is
    unsigned), its pool and a superuser connection, over a filled ledger."""
    due = {"audit_checkpoint_every_entries": 1, "audit_checkpoint_interval_s": 3600.0}
    async with probe_stack(base, migrated=("audit",), overrides=due) as stack:
        settings = stack.settings
        pool = await open_role_pool(settings, settings.audit_db_writer_role, max_size=1)
        admin = await asyncpg.connect(settings.audit_database_url)
        try:
            audit = audit_context(settings, pool, FixedClock(T0 + timedelta(days=400)))
            await append_random_entries(audit, entries)
            await admin.execute("VACUUM ANALYZE audit_ledger")
            yield audit, pool, admin
        finally:
            await admin.close()
            await pool.close()


async def sign_all(audit: AuditContext, admin: Any, sizes: list[int]) -> None:
    """Signed checkpoints at ``sizes``, kept aside in ``bench_checkpoints``."""
    await admin.execute(
        "CREATE TABLE bench_checkpoints AS SELECT * FROM audit_checkpoints WITH NO DATA"
    )
    for size in sizes:
        hasher = await audit.ledger.range_hasher([(0, size)])
        root = hasher(0, size)
        note = sign_checkpoint(audit.signer, audit.origin, size, root)
        await admin.execute(
            "INSERT INTO bench_checkpoints (tree_size, root_hash, note, created_at) "
            "VALUES ($1, $2, $3, now())",
            size,
            root,
            note,
        )


async def rewrite_from(admin: Any, position: int) -> None:
    """Every entry hash from ``position`` on replaced (what a re-chaining rewrite changes)."""
    async with admin.transaction():
        await admin.execute("SET LOCAL session_replication_role = replica")
        await admin.execute(
            "UPDATE audit_ledger SET hash = sha256(hash) WHERE position >= $1", position
        )


async def keep(admin: Any, sizes: list[int]) -> None:
    async with admin.transaction():
        await admin.execute("SET LOCAL session_replication_role = replica")
        await admin.execute("DELETE FROM audit_checkpoints")
        await admin.execute(
            "INSERT INTO audit_checkpoints SELECT * FROM bench_checkpoints "
            "WHERE tree_size = ANY($1::bigint[])",
            sizes,
        )
        if await admin.fetchval("SELECT to_regclass('audit_refusal_hints') IS NOT NULL"):
            await admin.execute("DELETE FROM audit_refusal_hints")  # each count halves first
    await admin.execute("VACUUM ANALYZE audit_checkpoints")


def forget(audit: AuditContext) -> None:
    """The context as a fresh process has it: no leaf proven yet, no rewrite located (Round
    34's kept pair), no note opened (Round 35's): attributes absent from older code skipped."""
    audit.signed_leaves.clear()
    getattr(audit, "refusal_pairs", {}).clear()
    getattr(audit, "opened_notes", {}).clear()


async def one_round(audit: AuditContext, logged: list[Any]) -> tuple[float, int, int]:
    """(ms, statements, position refused at) of one checkpointer round."""
    logged.clear()
    start = time.perf_counter()
    try:
        await checkpointing.checkpoint_if_due(audit)
    except AlteredEntry as error:
        ms = 1e3 * (time.perf_counter() - start)
        return ms, len(logged), error.position
    raise AssertionError("the round was not refused")


async def measure(args: argparse.Namespace, base: Path) -> None:
    n = args.entries
    signed_up_to = n - args.unsigned
    finest = [s for s in range(args.finest, signed_up_to + 1, args.finest)]
    logged: list[Any] = []
    async with asyncio.timeout(TIMEOUT_S), ledger(base, n) as (audit, pool, admin):
        started = time.perf_counter()
        await sign_all(audit, admin, finest)
        print(f"{len(finest)} checkpoints signed in {time.perf_counter() - started:.0f} s")
        await rewrite_from(admin, n // 2)
        async with pool.acquire() as conn:
            conn.add_query_logger(logged.append)
        for count in args.checkpoints:
            step = max(1, len(finest) // count)
            sizes = finest[len(finest) - 1 :: -step][:count][::-1]
            await keep(admin, sizes)
            forget(audit)  # a process that proved, located and opened nothing yet
            first = await one_round(audit, logged)
            later = [await one_round(audit, logged) for _ in range(args.rounds)]
            proven = len(audit.signed_leaves)
            hinted = []
            for _ in range(args.hinted):
                forget(audit)  # a fresh process: only the hint the first round stored
                hinted.append(await one_round(audit, logged))
            reads = []
            for _ in range(5):
                start = time.perf_counter()
                await audit.checkpoints.all()
                reads.append(1e3 * (time.perf_counter() - start))
            times = [t for t, _, _ in later]
            print(
                f"{len(sizes):6} checkpoints (every {sizes[1] - sizes[0] if len(sizes) > 1 else 0}"
                f" entries): first round {first[0]:.1f} ms, {first[1]} statements; later rounds "
                f"{statistics.median(times):.1f} ms [{min(times):.1f}-{max(times):.1f}], "
                f"{later[0][1]} statements, of it checkpoints.all() alone "
                f"{statistics.median(reads):.1f} ms; {proven} leaves kept as proven; refused at "
                f"{first[2]} (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            if hinted:
                fresh = [t for t, _, _ in hinted]
                print(
                    f"{'':6} hinted first rounds (a fresh process, the stored hint): "
                    f"{statistics.median(fresh):.1f} ms [{min(fresh):.1f}-{max(fresh):.1f}], "
                    f"{hinted[0][1]} statements, refused at {hinted[0][2]}",
                    flush=True,
                )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=20_010)
    parser.add_argument("--unsigned", type=int, default=10)
    parser.add_argument("--finest", type=int, default=2)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--hinted", type=int, default=5)
    return run_in_scratch(measure, parser.parse_args(), "refused-rounds-")


if __name__ == "__main__":
    raise SystemExit(main())

"""How long an export takes to its first byte, and what its check for an altered entry costs
(#12, audit migration 008).

Starts an embedded PostgreSQL only, fills a ledger with ``--entries`` entries (the ledger's
own append, many clients, branches and actors), then alternates two states of the same
database ``--pairs`` times: without the partial index of altered rows (dropped, as before
migration 008) and with it (built again). In each it times, per filter, the check alone
(``first_altered``: median wall ms of ``--repeat`` runs and the PostgreSQL server's mean CPU
ms), the time to the export's start (``start_export``: the read recorded and the check, when
the API answers 200) and to its first line (the checkpoint signed and the first page's 500
entries formatted too), medians of ``--repeat`` runs.

    python -m bench.profile_export_start [--entries 300000] [--pairs 3] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.audit.audit_support import random_events  # noqa: E402

from bench.export_ledger import ONE_ROUND  # noqa: E402
from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_ledger import server_cpu, server_cpu_since  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters.altered import ALTERED_ROW  # noqa: E402
from branchline_audit.adapters.database import open_role_pool  # noqa: E402
from branchline_audit.application.context import TrailReader  # noqa: E402
from branchline_audit.application.exporting import ExportSlots, start_export  # noqa: E402
from branchline_audit.bootstrap import audit_context  # noqa: E402
from branchline_audit.domain.filters import LedgerFilters  # noqa: E402
from branchline_shared.clock import SystemClock  # noqa: E402

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
FILTERS = {
    "everything": LedgerFilters(),
    "a client": LedgerFilters(client_id="C-7"),
    "a period (70 days)": LedgerFilters(occurred_from=T0, occurred_to=T0 + timedelta(days=70)),
}
INDEX = "audit_ledger_altered"
READER = TrailReader("auditor-1", frozenset({"auditor"}))


async def timed(audit: Any, server: Any, filters: LedgerFilters, repeat: int) -> str:
    checks, starts, firsts = [], [], []
    pg = server_cpu(server)
    for _ in range(repeat):
        started = time.perf_counter()
        assert await audit.ledger.first_altered(filters) is None
        checks.append(1e3 * (time.perf_counter() - started))
    pg_ms = 1e3 * server_cpu_since(server, pg) / repeat
    for _ in range(repeat):
        started = time.perf_counter()
        export = await start_export(audit, ExportSlots(4), READER, filters, "jsonl", route="bench")
        starts.append(1e3 * (time.perf_counter() - started))
        await anext(export.lines)
        firsts.append(1e3 * (time.perf_counter() - started))
        await export.lines.aclose()  # type: ignore[attr-defined]
    return (
        f"check {statistics.median(checks):7.1f} ms ({pg_ms:6.1f} ms PG CPU)"
        f" | started {statistics.median(starts):7.1f} ms"
        f" | first line {statistics.median(firsts):7.1f} ms"
    )


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base, migrated=("audit",), overrides=ONE_ROUND) as stack:
        settings, server = stack.settings, stack.server
        pool = await open_role_pool(settings, settings.audit_db_writer_role, max_size=4)
        try:
            audit = audit_context(settings, pool, SystemClock())
            rng = random.Random(15)
            started = time.perf_counter()
            for first in range(0, args.entries, 5000):
                events = random_events(
                    min(5000, args.entries - first), rng, first, clients=2000, branches=40,
                    actors=400,
                )  # fmt: skip
                await audit.ledger.append(events, now=T0)
            print(
                f"{args.entries:,} entries appended in {time.perf_counter() - started:.0f} s; "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            admin = await asyncpg.connect(settings.audit_database_url)  # the superuser
            await admin.execute("VACUUM ANALYZE audit_ledger")
            for p in range(args.pairs):
                for state in ("without index", "with index"):
                    if state == "without index":
                        await admin.execute(f"DROP INDEX IF EXISTS {INDEX}")
                    else:
                        await admin.execute(
                            f"CREATE INDEX IF NOT EXISTS {INDEX} ON audit_ledger (position) "
                            f"WHERE {ALTERED_ROW}"
                        )
                    await admin.execute("ANALYZE audit_ledger")
                    for name, filters in FILTERS.items():
                        line = await timed(audit, server, filters, args.repeat)
                        print(f"pair {p + 1} {state:13} {name:15} {line}", flush=True)
            await admin.close()
        finally:
            await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    return run_in_scratch(measure, parser.parse_args(), "bl-export-start-")


if __name__ == "__main__":
    raise SystemExit(main())

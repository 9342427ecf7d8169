"""What the export probes share (#12): a ledger filled on an embedded PostgreSQL, the reader
their exports are made for, and how they print a time.

``filled_audit`` appends ``entries`` generated entries (2,000 clients, 40 branches, 400
actors, one a minute from :data:`T0`) in appends of 5,000, with checkpoints held off so every
export reads the same tree, then analyses the ledger as a server that has run a while would
have it; it yields the audit context the probes export from.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.audit.audit_support import random_events  # noqa: E402

from bench.probe_stack import probe_stack  # noqa: E402
from branchline_audit.adapters.database import open_role_pool  # noqa: E402
from branchline_audit.application.context import AuditContext, TrailReader  # noqa: E402
from branchline_audit.bootstrap import audit_context  # noqa: E402
from branchline_shared.clock import FixedClock  # noqa: E402

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)  # the events' first occurred_at, a minute apart
READER = TrailReader("auditor-1", frozenset({"auditor"}))
APPEND = 5000


def ms(started: float) -> float:
    return 1e3 * (time.perf_counter() - started)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):9.1f} ms [{min(values):.1f}-{max(values):.1f}]"


async def append_random_entries(audit: AuditContext, entries: int) -> None:
    """``entries`` random events (seed 15: the same ledger every time) appended to ``audit``'s
    ledger, APPEND at a time, dated from :data:`T0`."""
    rng = random.Random(15)
    for first in range(0, entries, APPEND):
        events = random_events(
            min(APPEND, entries - first), rng, first, clients=2000, branches=40, actors=400
        )
        await audit.ledger.append(events, now=T0)


ONE_ROUND = {"audit_checkpoint_every_entries": 10**9, "audit_checkpoint_interval_s": 3600.0}
"""No checkpoint round while a probe fills or reads the ledger."""


@contextlib.asynccontextmanager
async def filled_audit(base: Path, entries: int) -> AsyncIterator[AuditContext]:
    async with probe_stack(base, migrated=("audit",), overrides=ONE_ROUND) as stack:
        settings = stack.settings
        pool = await open_role_pool(settings, settings.audit_db_writer_role, max_size=4)
        try:
            audit = audit_context(settings, pool, FixedClock(T0 + timedelta(days=400)))
            started = time.perf_counter()
            await append_random_entries(audit, entries)
            print(
                f"{entries:,} entries appended in {time.perf_counter() - started:.0f} s; "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            admin = await asyncpg.connect(settings.audit_database_url)  # the superuser
            await admin.execute("VACUUM ANALYZE audit_ledger")
            await admin.close()
            yield audit
        finally:
            await pool.close()

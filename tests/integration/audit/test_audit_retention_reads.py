"""Retention's candidate read (D-11, #12): bounded on its generic plan, and every expired entry
pruned exactly once whatever order the append times run in.

A bank keeps ten years of ledger (D-11): a retention run over a long ledger with few expired
entries must read those entries, not the ledger. asyncpg's prepared statements switch to a
generic plan after five runs; the read is checked on that plan, by its shape and by the pages
one run of it reads."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, cast

import pytest

from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.application import pruning
from branchline_audit.application.pruning import prune_expired
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.bootstrap import audit_context as built_context
from branchline_audit.bootstrap import retention_policy
from branchline_audit.domain.records import is_pruned_marker
from branchline_audit.domain.verification import StoredEntry
from branchline_shared.clock import FixedClock
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    event,
    lifecycle_event,
    quick_settings,
    random_events,
    superuser,
)
from tests.support.generic_plans import Recording, generic_plan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

YEAR = timedelta(days=365)
OLD = T0 - 11 * YEAR
"""Past every profile's retention: appended then, an entry is a candidate."""
CLOSED = "client.account_closed"


class Candidates:
    """The ledger, recording every candidate each page of retention's read hands out."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self._ledger = ledger
        self.seen: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    async def expired_candidates(self, **kwargs: Any) -> list[StoredEntry]:
        page = await self._ledger.expired_candidates(**kwargs)
        self.seen.extend(s.entry.position for s in page)
        return page


async def _buffers(pool: Any, statement: str, values: str) -> tuple[int, str]:
    """Shared buffers (hit + read) one run of ``statement`` on its generic plan touches."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE retention_probe AS {statement}")
        try:
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE retention_probe({values})"
            )
        finally:
            await conn.execute("DEALLOCATE retention_probe")
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], json.dumps(plan, indent=1)


async def test_retentions_read_is_bounded_on_its_generic_plan(
    settings: BranchlineSettings,
) -> None:
    """Few expired entries at the ledger's start, many recent ones after: the read walks
    audit_ledger_appended within the cutoff, never the primary key to the ledger's end."""
    s = quick_settings(settings)
    rng = random.Random(18)
    async with audit_context(s) as writer:
        await writer.ledger.append(
            [
                *(event(i, client_id="C-GONE") for i in range(40)),
                lifecycle_event(90, CLOSED, client_id="C-GONE", at=OLD),
            ],
            now=OLD,
        )
        await append_in_batches(writer.ledger, random_events(8000, rng, 40), now=T0)
        async with superuser(s) as conn:
            await conn.execute("ANALYZE audit_ledger")
            pages = await conn.fetchval(
                "SELECT pg_relation_size('audit_ledger') / current_setting('block_size')::int"
            )

    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        pool = cast(PostgresLedger, pruner.ledger).pool
        statements: list[str] = []
        ledger = built_context(s, cast(Any, Recording(pool, statements)), FixedClock(T0)).ledger
        dry = await prune_expired(
            ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1", dry_run=True
        )
        assert dry.pruned == 41
        (statement,) = {q for q in statements if "pruned_at IS NULL AND appended_at < $1" in q}

        plan = await generic_plan(pool, statement)
        # both bounds are conditions on the index, no time is filtered: the old read walked
        # audit_ledger_pkey from the page's position, filtering on appended_at. The one filter
        # is the clients that can be due (Round 25), a hashed subplan: a probe per row
        assert "audit_ledger_appended on audit_ledger " in plan, plan
        assert 'Index Cond: ((appended_at < $1) AND (ROW(appended_at, "position") >' in plan, plan
        filters = [line.strip() for line in plan.splitlines() if "Filter:" in line]
        assert len(filters) == 1, plan
        assert "(client_id IS NULL) OR" in filters[0], plan
        assert "hashed SubPlan" in filters[0], plan
        assert "appended_at" not in filters[0], plan

        cutoff = max(retention_policy(s).cutoffs(T0).values())
        for after in (0, 20):  # the first page, a next page
            touched, detail = await _buffers(
                pool,
                statement,
                f"'{cutoff.isoformat()}'::timestamptz, {after}, 5000, '{{C-GONE}}'::text[]",
            )
            # the candidates' pages and a few index pages; the ledger has hundreds
            assert touched < max(20, pages // 10), f"{touched} of {pages} pages:\n{detail}"


async def test_out_of_order_and_equal_append_times_prune_each_entry_once(
    settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of three, over runs of equal append times and times earlier than those of
    entries before them: every expired entry is handed out once and pruned once."""
    monkeypatch.setattr(pruning, "PAGE_SIZE", 3)
    s = quick_settings(settings, retention_branch_profiles={"BR-EU": "eu_mifid_ii"})
    async with audit_context(s) as writer:
        ledger = writer.ledger
        await ledger.append(
            [lifecycle_event(90, CLOSED, client_id="C-GONE", at=OLD - 2 * YEAR)],
            now=OLD - 2 * YEAR,
        )
        # recent: not candidates, whatever their position
        await ledger.append([event(i, client_id="C-GONE") for i in range(3)], now=T0 - YEAR)
        # seven entries at one time (a page boundary falls within them)
        await ledger.append([event(i, client_id="C-GONE") for i in range(10, 17)], now=OLD)
        # appended later at earlier times: before the entries above in time order
        await ledger.append(
            [event(i, client_id="C-GONE", branch_id="BR-EU") for i in range(20, 24)],
            now=OLD - YEAR,
        )
        await ledger.append([event(30, client_id="C-ACTIVE")], now=OLD - 2 * YEAR)  # kept
        await ledger.append([event(i, client_id="C-GONE") for i in range(40, 45)], now=OLD)
        await ledger.append([event(50, client_id="C-GONE")], now=T0)  # recent
        stored = [e async for e in ledger.scan_stored()]
        appended = {e.entry.position: datetime.fromisoformat(e.entry.appended_at) for e in stored}

    cutoff = max(retention_policy(s).cutoffs(T0).values())
    expired = sorted(p for p, at in appended.items() if at < cutoff)
    due = sorted(p for p in expired if stored[p - 1].columns.client_id == "C-GONE")
    assert len(expired) == 18
    assert len(due) == 17
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        candidates = Candidates(cast(PostgresLedger, pruner.ledger))
        outcome = await prune_expired(
            cast(Any, candidates), retention_policy(s), FixedClock(T0), actor_id="ops-1"
        )
        assert [p for p, n in Counter(candidates.seen).items() if n > 1] == []
        # C-ACTIVE's old entry is not read: an active client has nothing due (Round 25)
        assert sorted(candidates.seen) == due
        assert outcome.pruned == len(due)
        again = await prune_expired(
            pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1"
        )
        assert again.pruned == 0

    async with audit_context(s) as audit:
        entries = [e async for e in audit.ledger.scan_stored()]
        assert [e.entry.position for e in entries if is_pruned_marker(e.entry.event)] == due
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok, verdict.reason

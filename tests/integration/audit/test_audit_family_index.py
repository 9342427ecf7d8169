"""The trail's family filter (``type=audit.*``) reads an index, whatever the database's
collation, on custom and generic plans, and answers as a prefix match in ledger order (#12)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from branchline_audit.adapters.ledger import LedgerFilters, entries_statement, family_range
from branchline_audit.application.context import AuditContext
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    event,
    quick_settings,
    random_events,
    superuser,
)
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Rare types of the family, and neighbours a sloppy prefix or byte range would let in.
RARE = ("audit.read", "audit.export_made", "audit.z")
DECOYS = ("audit_x.read", "auditx.read", "audit/x", "audit", "Audit.read", "audit-.x", "aud.it")
INDEX = "audit_ledger_type_prefix"


@pytest.fixture(scope="module")
def ledger_settings(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> BranchlineSettings:
    """One audit database for the module: its tests only read the ledger (and prepare their
    own statements on their own connections), and appending it took ~2 s of each one's setup."""
    return make_settings(infra, tmp_path_factory.mktemp("family"))


@pytest.fixture(scope="module")
async def ledger(
    ledger_settings: BranchlineSettings,
) -> AsyncIterator[tuple[AuditContext, list[dict[str, Any]]]]:
    s = quick_settings(ledger_settings)
    rng = random.Random(12)
    events = random_events(6000, rng)
    for i in rng.sample(range(len(events)), 60):
        kind = rng.choice(RARE + DECOYS)
        events[i] = event(i, event_type=kind, client_id=f"C-{rng.randrange(20)}")
    async with audit_context(s) as audit:
        await append_in_batches(audit.ledger, events, now=T0)
        async with superuser(s) as conn:
            await conn.execute("ANALYZE audit_ledger")
        yield audit, events


def test_the_family_range_is_exactly_the_prefix() -> None:
    low, high = family_range("audit.")
    for kind in RARE + DECOYS + ("audit.", "audit.\U0001f600", "audit.~~~~"):
        assert (low.encode() <= kind.encode() < high.encode()) == kind.startswith("audit.")
    with pytest.raises(ValueError, match="ends with"):
        family_range("audit")


@pytest.mark.parametrize("family", ["audit.*", "followup.*", "visit.*", "nothing.*"])
async def test_family_pages_are_the_prefix_matches_in_ledger_order(
    ledger: tuple[AuditContext, list[dict[str, Any]]], family: str
) -> None:
    audit, events = ledger
    prefix = family[:-1]
    want = [p for p, e in enumerate(events, 1) if e["type"].startswith(prefix)]
    got: list[int] = []
    after = 0
    while True:
        page = await audit.ledger.entries(
            LedgerFilters(type=family), after_position=after, limit=97, up_to=len(events)
        )
        got += [e.entry.position for e in page]
        if len(page) < 97:
            break
        after = page[-1].entry.position
    assert got == want
    bounded = await audit.ledger.entries(
        LedgerFilters(type=family, client_id="C-3"), after_position=100, limit=5, up_to=4000
    )
    assert [e.entry.position for e in bounded] == [
        p
        for p, e in enumerate(events, 1)
        if 100 < p <= 4000 and e["type"].startswith(prefix) and e["client_id"] == "C-3"
    ][:5]


async def _plan(settings: BranchlineSettings, mode: str, filters: LedgerFilters) -> str:
    """The plan of the trail's statement as prepared (asyncpg prepares every statement, so
    after five runs PostgreSQL may switch to a generic plan, blind to the bound values)."""
    sql, params = entries_statement(filters)
    values = ", ".join(
        ["0", "100", str(2**62)] + ["'" + p.replace("'", "''") + "'" for p in params]
    )
    async with superuser(quick_settings(settings)) as conn:
        await conn.execute(f"SET plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE trail AS {sql}")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE trail({values})")
    return str(plan)


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize("kind", ["audit.*", "audit.read"])
async def test_the_type_filters_read_the_pattern_index(
    ledger: tuple[AuditContext, list[dict[str, Any]]],
    ledger_settings: BranchlineSettings,
    mode: str,
    kind: str,
) -> None:
    plan = await _plan(ledger_settings, mode, LedgerFilters(type=kind))
    assert INDEX in plan
    assert "Seq Scan" not in plan


@pytest.mark.parametrize("kind", [*RARE, *DECOYS, "visit.arrived", "audit.rea", "audit.read "])
async def test_a_type_filter_is_exactly_that_type_in_ledger_order(
    ledger: tuple[AuditContext, list[dict[str, Any]]], kind: str
) -> None:
    """#12: the exact type is asked for as a one-value byte range (for the generic plan):
    the same rows as equality, no neighbour, no prefix."""
    audit, events = ledger
    page = await audit.ledger.entries(
        LedgerFilters(type=kind), after_position=0, limit=10_000, up_to=len(events)
    )
    assert [e.entry.position for e in page] == [
        p for p, e in enumerate(events, 1) if e["type"] == kind
    ]

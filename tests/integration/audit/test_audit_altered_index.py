"""An export's check for an entry altered behind the ledger's back (D-11) reads the partial
index of altered rows (audit migration 008), not the ledger: its cost follows the altered
rows, not the export's range (#12). The index's predicate is the adapter's condition, and an
altered time of each column is found through it."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import pytest

from branchline_audit.adapters.altered import ALTERED_ROW
from branchline_audit.adapters.ledger import LedgerFilters, PostgresLedger, first_altered_statement
from branchline_audit.application.context import AuditContext
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    UNWRITTEN_TIMES,
    audit_context,
    behind_the_ledgers_back,
    copy_ledger,
    filled_ledger,
    quick_settings,
    random_events,
    superuser,
)
from tests.support.generic_plans import Recording, generic_plan
from tests.support.stack import Infra

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ENTRIES = 6000
INDEX = "audit_ledger_altered"
FROM, TO = T0 + timedelta(minutes=1000), T0 + timedelta(minutes=2000)
FILTERS = {
    "everything": LedgerFilters(),
    "a client": LedgerFilters(client_id="C-7"),
    "an actor": LedgerFilters(actor_id="staff-7"),
    "a branch": LedgerFilters(branch_id="BR-7"),
    "a type": LedgerFilters(type="visit.arrived"),
    "a family": LedgerFilters(type="followup.*"),
    "a period": LedgerFilters(occurred_from=FROM, occurred_to=TO),
    "a client in a period": LedgerFilters(client_id="C-7", occurred_from=FROM, occurred_to=TO),
}


EVENTS = random_events(ENTRIES, random.Random(8), clients=2000, branches=40, actors=400)


@pytest.fixture(scope="module")
async def filled_database(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ledger of :data:`EVENTS`, analyzed, appended once for the module (0.4-0.6 s of
    each test's setup before): each test reads or alters its own copy (``filled``)."""
    return await filled_ledger(infra, tmp_path_factory.mktemp("filled"), EVENTS, analyze=True)


@pytest.fixture
async def filled(
    settings: BranchlineSettings, filled_database: str
) -> AsyncIterator[tuple[AuditContext, BranchlineSettings, list[dict[str, Any]]]]:
    s = quick_settings(settings)
    await copy_ledger(s, filled_database)
    async with audit_context(s) as audit:
        yield audit, s, EVENTS


async def _index_predicate(conn: Any, index: str) -> str:
    return cast(
        str,
        await conn.fetchval(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = $1::regclass",
            index,
        ),
    )


async def test_the_index_holds_exactly_the_rows_the_adapter_calls_altered(
    filled: tuple[AuditContext, BranchlineSettings, list[dict[str, Any]]],
) -> None:
    """The planner reads a partial index only for a condition that implies its predicate:
    migration 008's text and ``ALTERED_ROW`` must be the same expression."""
    _, s, _ = filled
    async with superuser(s) as conn:
        built = await _index_predicate(conn, INDEX)
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(
                f"CREATE INDEX altered_probe ON audit_ledger (position) WHERE {ALTERED_ROW}"
            )
            probe = await _index_predicate(conn, "altered_probe")
        finally:
            await tr.rollback()
        valid, size = await conn.fetchrow(
            "SELECT i.indisvalid, c.reltuples FROM pg_index i JOIN pg_class c "
            "ON c.oid = i.indexrelid WHERE i.indexrelid = $1::regclass",
            INDEX,
        )
    assert built == probe
    assert valid
    assert size <= 0  # a sound ledger's entries are not in it (-1: never counted)


async def _plans(pool: Any, filters: LedgerFilters) -> tuple[str, str, str]:
    """The check's statement, its plan for these values and its generic plan."""
    statements: list[str] = []
    await PostgresLedger(cast(Any, Recording(pool, statements))).first_altered(filters)
    statement, params = first_altered_statement(filters)
    assert statements == [statement]
    async with pool.acquire() as conn:
        custom = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {statement}", *params))
    return statement, custom, await generic_plan(pool, statement)


@pytest.mark.parametrize("name", FILTERS)
async def test_the_check_reads_the_index_of_altered_rows_not_the_ledger(
    filled: tuple[AuditContext, BranchlineSettings, list[dict[str, Any]]], name: str
) -> None:
    audit, _, _ = filled
    pool = cast(PostgresLedger, audit.ledger).pool
    statement, custom, generic = await _plans(pool, FILTERS[name])
    for plan in (custom, generic):
        assert f"Index Scan using {INDEX} on audit_ledger" in plan, f"{statement}\n{plan}"
        assert "Seq Scan" not in plan, plan
        assert plan.count("Scan") == 1, plan


async def test_an_altered_time_of_each_column_is_found_through_the_index(
    filled: tuple[AuditContext, BranchlineSettings, list[dict[str, Any]]],
) -> None:
    """Each column and each time no append writes, altered at a position before the ones
    altered already: the check finds it first, through the index (EXPLAIN ANALYZE: the
    index scan returns it), for the export of everything and of its client; an export of a
    client none of whose entries is altered is not refused."""
    audit, s, events = filled
    pool = cast(PostgresLedger, audit.ledger).pool
    cases = [(c, t) for c in ("appended_at", "occurred_at", "pruned_at") for t in UNWRITTEN_TIMES]
    sound_client = "C-untouched"
    assert all(e["client_id"] != sound_client for e in events)
    for i, (column, text) in enumerate(cases):
        position = ENTRIES - 100 * (i + 1)
        await behind_the_ledgers_back(
            s,
            f"UPDATE audit_ledger SET {column} = $1::text::timestamptz WHERE position = $2",
            text,
            position,
        )
        client = events[position - 1]["client_id"]
        for filters in (LedgerFilters(), LedgerFilters(client_id=client)):
            found = await audit.ledger.first_altered(filters)
            assert found is not None, (column, text, filters)
            assert found.entry.position == position, (column, text, filters)
            assert found.unwritten is not None
            assert column in found.unwritten
        assert await audit.ledger.first_altered(LedgerFilters(client_id=sound_client)) is None
        statement, _, _ = await _plans(pool, LedgerFilters())
        async with pool.acquire() as conn:
            analysed = "\n".join(
                r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {statement}")
            )
        scan = next(line for line in analysed.splitlines() if f"using {INDEX}" in line)
        assert re.search(r"rows=1(\.00)? ", scan), analysed

"""The audit API's reads on generic plans (#12): the trail's pages under each filter, an
entry's inclusion proof, a consistency proof, the latest checkpoint, a client's legal holds.

Each read runs against a filled ledger through a pool that records its statements
(:mod:`tests.support.generic_plans`); no statement's generic plan may read the ledger or the
Merkle tree whole. ``GET /v1/audit/verify`` and the export read the whole ledger by design and
are not here. The trail's type filters are checked in ``test_audit_family_index``."""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import pytest

from branchline_audit.adapters.checkpoints import PostgresCheckpoints
from branchline_audit.adapters.ledger import LedgerFilters, PostgresLedger
from branchline_audit.application.checkpointing import checkpoint_now, latest_covering
from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.holds import HOLD_TYPES
from branchline_audit.application.proofs import consistency, inclusion
from branchline_audit.application.querying import views_of
from branchline_audit.application.signed_leaves import refuse_unsigned
from branchline_shared.events.catalogue import EventType
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    quick_settings,
    random_events,
    superuser,
)
from tests.support.generic_plans import Recording, generic_plan, whole_reading_statements

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ENTRIES = 8000
KINDS = sorted(EventType)
"""Every type of the catalogue: a type filter's or a legal hold's type is rare, as at a bank."""


def events(count: int, rng: random.Random, start: int) -> list[dict[str, Any]]:
    """Events of many clients, actors and branches (a trail filter's value is rare, as at a
    bank, not one in twenty)."""
    return random_events(count, rng, start, types=KINDS, clients=2000, branches=40, actors=400)


OTHER_ROWS = """
INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at)
SELECT n, sha256(n::text::bytea), 'n', now() FROM generate_series(1, $1 - 1) AS n;
INSERT INTO audit_merkle_nodes (level, node_index, hash)
SELECT 60, n, sha256(n::text::bytea) FROM generate_series(0, 19999) AS n;
INSERT INTO audit_restricted_clients (client_id, state, since, source_event_id)
SELECT 'X-' || n, 'restricted', now(), gen_random_uuid() FROM generate_series(1, 5000) AS n;
ANALYZE;
"""
"""The checkpoints, tree nodes and restricted clients a ledger older than the test's has:
checkpoints below the first real one, nodes at a level no tree of the test reaches, clients
of no entry. Nothing the reads below look up."""


@pytest.fixture
async def filled(settings: BranchlineSettings) -> AsyncIterator[tuple[AuditContext, int]]:
    s = quick_settings(settings)
    rng = random.Random(12)
    async with audit_context(s) as audit:
        await append_in_batches(audit.ledger, events(ENTRIES // 2, rng, 0), now=T0)
        first = (await checkpoint_now(audit)).tree_size
        await append_in_batches(audit.ledger, events(ENTRIES // 2, rng, ENTRIES // 2), now=T0)
        await checkpoint_now(audit)
        async with superuser(s) as conn:
            await conn.execute(OTHER_ROWS.replace("$1", str(first)))
            # The old checkpoints are not signed (test data): their last leaves are taken as
            # proven, so that the reads meeting one go on to their other statements; the
            # proofs of the real ones are read and their plans checked (Round 28).
            rows = await conn.fetch(
                "SELECT position, hash FROM audit_ledger WHERE position < $1", first
            )
        audit.signed_leaves.update((r["position"], bytes(r["hash"])) for r in rows)
        yield audit, first


Read = Callable[[AuditContext], Awaitable[object]]


def trail(filters: LedgerFilters, after: int = 0) -> Read:
    async def read(audit: AuditContext) -> object:
        page = await audit.ledger.entries(filters, after_position=after, limit=100)
        return await views_of(audit, page, TrailReader("auditor-1", frozenset({"auditor"})))

    return read


FROM, TO = T0 + timedelta(days=1), T0 + timedelta(days=2)
READS: dict[str, Read] = {
    "trail": trail(LedgerFilters()),
    "trail, next page": trail(LedgerFilters(), after=5000),
    "trail of a client": trail(LedgerFilters(client_id="C-7")),
    "trail of a client, next page": trail(LedgerFilters(client_id="C-7"), after=5000),
    "trail of an actor": trail(LedgerFilters(actor_id="staff-7")),
    "trail of a branch": trail(LedgerFilters(branch_id="BR-7")),
    "trail of a period": trail(LedgerFilters(occurred_from=FROM, occurred_to=TO)),
    "trail from an instant": trail(LedgerFilters(occurred_from=FROM)),
    "trail of a client in a period": trail(
        LedgerFilters(client_id="C-7", occurred_from=FROM, occurred_to=TO)
    ),
    "inclusion proof": lambda audit: inclusion(audit, 4321),
    "latest checkpoint": lambda audit: latest_covering(audit, 0),
    "a client's legal holds": lambda audit: audit.ledger.facts(HOLD_TYPES, "C-7"),
    "every legal hold": lambda audit: audit.ledger.facts(HOLD_TYPES),
}
INDEXES = {
    "trail of a client": "audit_ledger_client",
    "trail of a client, next page": "audit_ledger_client",
    "trail of an actor": "audit_ledger_actor",
    "trail of a branch": "audit_ledger_branch",
    "trail of a period": "audit_ledger_occurred",
}
"""A filtered page walks its filter's index: on the primary key, a generic plan's guess
(the position range, a small share of the ledger) would read the whole ledger to find a rare
client's page."""


async def test_no_read_scans_the_ledger_on_its_generic_plan(
    filled: tuple[AuditContext, int],
) -> None:
    audit, first = filled
    pool = cast(PostgresLedger, audit.ledger).pool
    scans: dict[str, str] = {}
    reads: dict[str, Read] = {
        **READS,
        "consistency proof": lambda audit: consistency(audit, first, ENTRIES),
    }
    for name, read in reads.items():
        statements: list[str] = []
        recording = cast(Any, Recording(pool, statements))
        ledger = PostgresLedger(recording)
        recorded = AuditContext(
            ledger=ledger,
            checkpoints=PostgresCheckpoints(recording),
            signer=audit.signer,
            clock=audit.clock,
            policy=audit.policy,
            signed_leaves=dict(audit.signed_leaves),
        )
        ledger.hold_facts_to(functools.partial(refuse_unsigned, recorded))  # as the service's
        await read(recorded)
        assert statements, name
        if name in INDEXES:
            plan = await generic_plan(pool, statements[0])
            assert f"Index Scan using {INDEXES[name]} " in plan, f"{name}:\n{plan}"
        for statement, plan in (await whole_reading_statements(pool, statements)).items():
            scans.setdefault(statement, f"{name}:\n{plan}")
    assert not scans, "\n\n".join(f"{s}\n{p}" for s, p in scans.items())

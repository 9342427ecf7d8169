"""Migration 006 (#12): an entry appended since stores its event once, inside its canonical
bytes. The migration changes no stored row: entries appended before keep what they held and
verify as before, beside the new ones; nothing may hold neither an event nor bytes; a prune
of either kind passes the trigger; SQL readers find the event where it is."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from bench.scale import AUDIT_HELD

from branchline_audit.adapters.database import SERVICE, prepare_database
from branchline_audit.adapters.ledger import UnstorableEvent
from branchline_audit.adapters.reconciling import ledger_applied
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    chain_hash,
    entry_canonical_bytes,
    event_json,
    format_appended_at,
)
from branchline_audit.domain.records import (
    index_columns,
    position_ranges,
    prune_record,
    pruned_marker,
)
from branchline_shared.postgres.migrations import load_migrations, migrate
from branchline_shared.postgres.pool import ensure_database
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    audit_context,
    behind_the_ledgers_back,
    event,
    quick_settings,
    superuser,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OLD = 12
"""Entries appended before migration 006: 1..4 as before migration 004 (the event only),
5..12 as between 004 and 006 (the event in its column and in the bytes)."""


async def _ledger_before_006(settings: BranchlineSettings) -> None:
    """An audit database at migration 005 holding :data:`OLD` entries in the forms the
    appends of that time wrote."""
    await ensure_database(settings.audit_database_url)
    async with superuser(settings) as conn:
        migrations = [m for m in load_migrations("branchline_audit.migrations") if m.version < 6]
        await migrate(conn, SERVICE, migrations)
        prev = GENESIS_PREV_HASH
        at = format_appended_at(T0)
        for position in range(1, OLD + 1):
            envelope = event(position)
            canonical = entry_canonical_bytes(position, envelope, at)
            digest = chain_hash(prev, canonical)
            index = index_columns(envelope)
            await conn.execute(
                "INSERT INTO audit_ledger (position, event_id, event, event_type, client_id, "
                "actor_id, branch_id, occurred_at, appended_at, prev_hash, hash, canonical) "
                "VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                position,
                index.event_id,
                event_json(canonical, position, at).decode(),
                index.event_type,
                index.client_id,
                index.actor_id,
                index.branch_id,
                index.occurred_at,
                T0,
                prev,
                digest,
                None if position <= 4 else canonical,
            )
            prev = digest


async def _all_rows(settings: BranchlineSettings) -> list[asyncpg.Record]:
    async with superuser(settings) as conn:
        return await conn.fetch("SELECT * FROM audit_ledger ORDER BY position")


async def test_the_migration_changes_no_entry_and_old_and_new_entries_verify(
    settings: BranchlineSettings,
) -> None:
    s = quick_settings(settings)
    await _ledger_before_006(s)
    before = await _all_rows(s)
    await prepare_database(s)  # applies 006
    assert await _all_rows(s) == before  # every row as it was, byte for byte
    async with audit_context(s) as audit:
        await audit.ledger.append([event(n) for n in range(100, 110)], now=T0)
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok, verdict.reason
        assert verdict.entries == OLD + 10
        rows = await _all_rows(s)
        assert [r["event"] is None for r in rows] == [False] * OLD + [True] * 10
        # Readers see every entry's event, wherever it is stored.
        for position in (3, 7, OLD + 4):
            stored = await audit.ledger.entry(position)
            assert stored is not None
            assert stored.entry.event["stream_version"] == (
                position if position <= OLD else 100 + position - OLD - 1
            )
        # An old entry's column still counts: altered, it is found.
        await behind_the_ledgers_back(
            s,
            "UPDATE audit_ledger SET event = jsonb_set(event, '{data}', '{}') WHERE position = 7",
        )
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.bad_positions == (7,), verdict.reason


async def test_no_entry_may_hold_neither_its_event_nor_its_bytes(
    settings: BranchlineSettings,
) -> None:
    """The constraint holds whoever writes, also a superuser with the triggers off."""
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        await audit.ledger.append([event(n) for n in range(3)], now=T0)
    with pytest.raises(asyncpg.CheckViolationError, match="audit_ledger_event_or_bytes"):
        await behind_the_ledgers_back(
            s, "UPDATE audit_ledger SET canonical = NULL WHERE position = 2"
        )


async def test_entries_of_either_kind_are_pruned_and_the_ledger_verifies(
    settings: BranchlineSettings,
) -> None:
    """The retention trigger compares the marker with the event where it is stored: the
    column for an entry appended before 006, the bytes for one appended since."""
    s = quick_settings(settings)
    await _ledger_before_006(s)
    await prepare_database(s)
    async with audit_context(s) as writer:
        await writer.ledger.append([event(n) for n in range(100, 105)], now=T0)
    pruned = [2, 9, OLD + 3]  # before 004, between 004 and 006, since 006
    later = T0 + timedelta(days=1)
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        markers = {}
        for position in pruned:
            stored = await pruner.ledger.entry(position)
            assert stored is not None
            markers[position] = pruned_marker(stored.entry.event, pruned_at=later)
        record = prune_record(
            now=later,
            actor_id="ops-1",
            ranges=position_ranges(markers),
            count=len(markers),
            cutoffs={},
            held_clients_skipped=[],
        )
        assert await pruner.ledger.prune(markers, now=later, record=record) == len(pruned)
        verdict = await verify_ledger(
            pruner.ledger,
            pruner.checkpoints,
            verifier=pruner.signer.verifier(),
            origin=pruner.origin,
        )
        assert verdict.ok, verdict.reason
    rows = {r["position"]: r for r in await _all_rows(s)}
    for position in pruned:
        assert rows[position]["canonical"] is None
        marker = json.loads(rows[position]["event"])
        assert "data" not in marker
        assert marker["redaction"]["reason"] == "retention"


async def test_reconcile_reads_the_source_of_entries_storing_their_event_once(
    settings: BranchlineSettings,
) -> None:
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        await audit.ledger.append([event(n) for n in range(3)], now=T0)
        applied = await ledger_applied(audit.ledger.pool)
    sources: list[Any] = [a.source for a in applied]
    assert sources == ["intake"] * 3
    async with superuser(s) as conn:  # the benchmark's catch-up count reads it alike
        assert await conn.fetchval(AUDIT_HELD) == 3


async def test_an_event_holding_a_nul_character_is_refused_and_nothing_is_appended(
    settings: BranchlineSettings,
) -> None:
    """jsonb cannot hold U+0000, and SQL readers read the event as jsonb: the ledger refuses
    such an event itself, as the event column did before migration 006. The text ``\\u0000``
    (a backslash and five characters) is no NUL and is appended."""
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        with pytest.raises(UnstorableEvent, match="NUL"):
            await audit.ledger.append([event(1), event(2, data={"note": "a\x00b"})], now=T0)
        with pytest.raises(UnstorableEvent, match="NUL"):
            await audit.ledger.append([event(3, data={"k\x00": 1})], now=T0)
        assert await audit.ledger.size() == 0
        assert await audit.ledger.append([event(4, data={"note": "\\u0000"})], now=T0) == 1
        stored = await audit.ledger.entry(1)
        assert stored is not None
        assert stored.entry.event["data"] == {"note": "\\u0000"}
        applied = await ledger_applied(audit.ledger.pool)
        assert [a.source for a in applied] == ["intake"]
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok, verdict.reason

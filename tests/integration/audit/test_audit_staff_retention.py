"""Retention (D-11) of a member of staff's entries, with a controlled clock: their records
(the entries whose envelope names them) count from the end of their employment, never from
their own append time; an employed member of staff's are never pruned; a legal hold on them,
or on a client one of their gifts names, keeps them until it is lifted (as followup decides
for their texts); the ledger verifies after the prune. Migration 009 fills the facts this
needs from the entries stored before it, idempotently."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from branchline_audit.adapters.database import SERVICE, prepare_database
from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.holds import HoldActor, lift_hold, place_hold
from branchline_audit.application.pruning import prune_expired
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.bootstrap import retention_policy
from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    chain_hash,
    entry_canonical_bytes,
    format_appended_at,
)
from branchline_audit.domain.records import index_columns, is_pruned_marker
from branchline_audit.domain.relationships import hold_subject
from branchline_shared.clock import FixedClock
from branchline_shared.postgres.migrations import load_migrations, migrate, split_statements
from branchline_shared.postgres.pool import ensure_database
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    audit_context,
    event,
    quick_settings,
    superuser,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

YEAR = timedelta(days=365)
OLD = T0 - 11 * YEAR
AUDITOR = HoldActor("auditor-1", "auditor")


def _settings(settings: BranchlineSettings) -> BranchlineSettings:
    # BR-CN: the default 10 years; BR-EU: 5 years
    return quick_settings(settings, retention_branch_profiles={"BR-EU": "eu_mifid_ii"})


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def staff_event(
    n: int, event_type: str, *, staff_id: str, data: dict[str, Any], branch_id: str = "BR-CN"
) -> dict[str, Any]:
    """A member of staff's event as the consumer stores it: the envelope names them
    (``staff_id``), no client."""
    envelope = event(n, event_type=event_type, branch_id=branch_id, actor_id="admin-1", data=data)
    return {
        **envelope,
        "client_id": None,
        "product_id": None,
        "staff_id": staff_id,
        "stream_id": f"staff-{staff_id}",
    }


def training(n: int, staff_id: str, branch_id: str = "BR-CN") -> dict[str, Any]:
    data = {"hours": "8", "topic": "sealed:topic", "completed_at": _iso(OLD)}
    return staff_event(
        n, "staff.training_recorded", staff_id=staff_id, data=data, branch_id=branch_id
    )


def erasure(
    n: int, staff_id: str, ended: datetime | None, branch_id: str = "BR-CN"
) -> dict[str, Any]:
    data: dict[str, Any] = {"reason": "sealed:reason"}
    if ended is not None:
        data["employment_ended_at"] = _iso(ended)
    return staff_event(
        n, "staff.erasure_requested", staff_id=staff_id, data=data, branch_id=branch_id
    )


def gift(n: int, staff_id: str, client_id: str) -> dict[str, Any]:
    data = {"client_id": client_id, "value": "100", "accepted": False, "description": "s:d"}
    return staff_event(n, "staff.gift_recorded", staff_id=staff_id, data=data)


async def _hold(
    ledger: PostgresLedger,
    hold_id: str,
    *,
    staff_id: str | None = None,
    client_id: str | None = None,
) -> None:
    await place_hold(
        ledger,
        FixedClock(T0 - 2 * YEAR),
        actor=AUDITOR,
        client_id=hold_subject(client_id=client_id, staff_id=staff_id),
        hold_id=hold_id,
        reason="internal_investigation",
    )


async def _prune(s: BranchlineSettings) -> Any:
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        return await prune_expired(pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="o")


async def _pruned_positions(s: BranchlineSettings) -> list[int]:
    async with audit_context(s) as audit:
        return [
            e.entry.position
            async for e in audit.ledger.scan_stored()
            if is_pruned_marker(e.entry.event)
        ]


async def test_a_hold_keeps_a_leavers_entries_until_lifted_and_the_employed_are_kept(
    settings: BranchlineSettings,
) -> None:
    s = _settings(settings)
    async with audit_context(s) as writer:
        await writer.ledger.append(
            [
                training(1, "S-1"),  # left 11 years ago, held directly
                erasure(2, "S-1", OLD),
                training(3, "S-2"),  # still employed: asked for erasure, no end given
                erasure(4, "S-2", None),
                gift(5, "S-3", "C-G"),  # left 11 years ago, a client of their gift is held
                erasure(6, "S-3", OLD),
            ],
            now=OLD,
        )
        await _hold(writer.ledger, "H-S1", staff_id="S-1")  # position 7
        await _hold(writer.ledger, "H-CG", client_id="C-G")  # position 8
        before = await checkpoint_now(writer)

    held = await _prune(s)
    # the old rule pruned all six (no client: counted from their append, 11 > 10 years)
    assert (held.pruned, held.ranges) == (0, [])
    assert held.held_clients_skipped == {"#staff/S-1", "#staff/S-3"}

    async with audit_context(s) as writer:
        await lift_hold(
            writer.ledger, FixedClock(T0 - YEAR), actor=AUDITOR, hold_id="H-S1", reason="other"
        )
    lifted = await _prune(s)
    # S-1's records go once their hold is lifted (their retention ran from the end of their
    # employment); S-3's stay while a client of their gift is held; S-2 is still employed
    assert lifted.ranges == [[1, 2]]
    assert lifted.held_clients_skipped == {"#staff/S-3"}
    assert await _pruned_positions(s) == [1, 2]

    async with audit_context(s) as audit:
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok, verdict.reason
        assert verdict.checkpoints_checked >= 1
        latest = await audit.checkpoints.latest()
        assert latest is not None
        assert latest.tree_size == before.tree_size  # the checkpoint before the prunes holds


async def test_a_member_of_staffs_entries_count_from_the_end_of_their_employment(
    settings: BranchlineSettings,
) -> None:
    s = _settings(settings)
    async with audit_context(s) as writer:
        await writer.ledger.append(
            [
                training(1, "S-4"),  # BR-CN, 10 years: left 6 years ago → kept
                training(2, "S-5", "BR-EU"),  # BR-EU, 5 years: left 6 years ago → pruned
                training(3, "S-6", "BR-EU"),  # an end named 11 years ago, then a later one
                erasure(4, "S-6", OLD, "BR-EU"),
            ],
            now=OLD,
        )
        await writer.ledger.append(
            [
                erasure(5, "S-4", T0 - 6 * YEAR),
                erasure(6, "S-5", T0 - 6 * YEAR, "BR-EU"),
            ],
            now=T0 - 6 * YEAR,
        )
        # the latest request naming an end sets it, as in followup: 3 years ago → kept
        await writer.ledger.append([erasure(7, "S-6", T0 - 3 * YEAR, "BR-EU")], now=T0 - 3 * YEAR)

    outcome = await _prune(s)
    # the old rule pruned 1..4 (appended 11 years ago) and 6 (6 > 5 years), kept 5 and 7
    assert outcome.ranges == [[2, 2], [6, 6]]
    assert outcome.held_clients_skipped == set()
    async with audit_context(s) as audit:
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok, verdict.reason
        # the prune of S-5's request dropped its payload; its end stays known (migration 009)
        ends = await audit.ledger.staff_retention()
        assert ends.employment_ends["S-5"] == T0 - 6 * YEAR
        assert ends.employment_ends["S-6"] == T0 - 3 * YEAR
        assert "S-4" in ends.employment_ends
    again = await _prune(s)
    assert (again.pruned, again.ranges) == (0, [])  # nothing more is due


async def _ledger_before_009(s: BranchlineSettings, events: list[dict[str, Any]]) -> None:
    """An audit database at migration 008 holding ``events`` as the appends of that time
    wrote them (the event in its canonical bytes only, no staff facts)."""
    await ensure_database(s.audit_database_url)
    async with superuser(s) as conn:
        migrations = [m for m in load_migrations("branchline_audit.migrations") if m.version < 9]
        await migrate(conn, SERVICE, migrations)
        prev = GENESIS_PREV_HASH
        at = format_appended_at(OLD)
        for position, envelope in enumerate(events, start=1):
            canonical = entry_canonical_bytes(position, envelope, at)
            digest = chain_hash(prev, canonical)
            index = index_columns(envelope)
            await conn.execute(
                "INSERT INTO audit_ledger (position, event_id, event_type, client_id, "
                "actor_id, branch_id, occurred_at, appended_at, prev_hash, hash, canonical) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                position,
                index.event_id,
                index.event_type,
                index.client_id,
                index.actor_id,
                index.branch_id,
                index.occurred_at,
                OLD,
                prev,
                digest,
                canonical,
            )
            prev = digest


async def _facts(s: BranchlineSettings) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with superuser(s) as conn:
        ends = await conn.fetch("SELECT * FROM audit_staff_employment_ends ORDER BY position")
        gifts = await conn.fetch("SELECT * FROM audit_staff_gift_clients ORDER BY staff_id")
    return [tuple(r) for r in ends], [tuple(r) for r in gifts]


async def test_migration_009_fills_the_facts_from_the_entries_stored_before_idempotently(
    settings: BranchlineSettings,
) -> None:
    s = _settings(settings)
    await _ledger_before_009(
        s,
        [
            training(1, "S-1"),
            erasure(2, "S-1", OLD),
            erasure(3, "S-2", None),  # no end: still employed, nothing to copy
            gift(4, "S-3", "C-G"),
            gift(5, "S-3", "C-G"),  # the same client again: one row, the first position
            erasure(6, "S-3", OLD),
            event(7, client_id="C-G"),  # a client's entry: not a member of staff's
        ],
    )
    await prepare_database(s)  # applies 009 (and provisions its tables' grants)
    ends, gifts = await _facts(s)
    assert ends == [(2, "S-1", OLD), (6, "S-3", OLD)]
    assert gifts == [("S-3", "C-G", 4)]

    backfill = split_statements(
        next(m for m in load_migrations("branchline_audit.migrations") if m.version == 9).sql
    )[-1]
    async with superuser(s) as conn:
        await conn.execute(backfill)  # run again: nothing added, nothing refused
    assert await _facts(s) == (ends, gifts)

    async with audit_context(s) as writer:
        await _hold(writer.ledger, "H-CG", client_id="C-G")  # position 8
    outcome = await _prune(s)
    # S-1 left 11 years ago: pruned; S-3's gift names a held client: kept
    assert outcome.ranges == [[1, 2]]
    assert outcome.held_clients_skipped == {"#staff/S-3"}

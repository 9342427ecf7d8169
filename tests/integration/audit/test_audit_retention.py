"""Retention (D-11) with a controlled clock: a client's records count from the end of the
relationship recorded in the ledger (an active client is never pruned), payloads past their
profile's period are dropped, hashes stay, the chain and every checkpoint still verify, legal
holds placed (and lifted) as recorded entries are honoured, and the prune is in the ledger."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.holds import HoldActor, lift_hold, list_holds, place_hold
from branchline_audit.application.proofs import inclusion
from branchline_audit.application.pruning import prune_expired
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.bootstrap import retention_policy
from branchline_audit.domain.records import is_pruned_marker
from branchline_audit.domain.relationships import HoldRefused
from branchline_audit.domain.retention import RetentionError
from branchline_shared.clock import FixedClock
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    audit_context,
    behind_the_ledgers_back,
    event,
    lifecycle_event,
    quick_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

YEAR = timedelta(days=365)


CLOSED = "client.account_closed"
REOPENED = "client.account_reopened"
AUDITOR = HoldActor("auditor-1", "auditor")


def _settings(settings: BranchlineSettings) -> BranchlineSettings:
    # the former configuration list is ignored by retention: only recorded holds count
    return quick_settings(
        settings,
        retention_branch_profiles={"BR-EU": "eu_mifid_ii"},
        retention_legal_hold_clients=["C-1"],
    )


async def _hold(ledger: PostgresLedger, client_id: str, hold_id: str) -> None:
    await place_hold(
        ledger,
        FixedClock(T0 - 2 * YEAR),
        actor=AUDITOR,
        client_id=client_id,
        hold_id=hold_id,
        reason="litigation",
        case_reference="CASE-1",
    )


async def test_prune_drops_expired_payloads_keeps_hashes_and_is_recorded(
    settings: BranchlineSettings,
) -> None:
    s = _settings(settings)
    old = T0 - 11 * YEAR
    async with audit_context(s) as writer:
        await writer.ledger.append(
            [
                event(1, client_id="C-1", branch_id="BR-CN"),  # closed 11 years ago → pruned
                event(2, client_id="C-HELD", branch_id="BR-CN"),  # closed, legal hold → kept
                event(3, client_id="C-2", branch_id="BR-EU"),  # closed 11 > 5 years → pruned
                lifecycle_event(90, CLOSED, client_id="C-1", at=old, branch_id="BR-CN"),
                lifecycle_event(91, CLOSED, client_id="C-HELD", at=old, branch_id="BR-CN"),
                lifecycle_event(92, CLOSED, client_id="C-2", at=old, branch_id="BR-EU"),
                # registered 11 years ago and still a client: never prunable
                event(4, client_id="C-ACTIVE", branch_id="BR-CN"),
            ],
            now=old,
        )
        await writer.ledger.append(
            [
                event(5, client_id="C-3", branch_id="BR-EU"),  # closed 6 > 5 years → pruned
                lifecycle_event(93, CLOSED, client_id="C-3", at=T0 - 6 * YEAR, branch_id="BR-EU"),
                event(6, client_id="C-4", branch_id="BR-CN"),  # closed 6 < 10 years → kept
                lifecycle_event(94, CLOSED, client_id="C-4", at=T0 - 6 * YEAR, branch_id="BR-CN"),
            ],
            now=T0 - 6 * YEAR,
        )
        await writer.ledger.append([event(7, client_id="C-5")], now=T0)
        await _hold(writer.ledger, "C-HELD", "H-1")
        before = await checkpoint_now(writer)
        hashes = {e.entry.position: e.entry.hash async for e in writer.ledger.scan_stored()}

    async with audit_context(s, role=s.audit_db_pruner_role, clock=FixedClock(T0)) as pruner:
        dry = await prune_expired(
            pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1", dry_run=True
        )
        assert dry.pruned == 6
        assert await pruner.ledger.size() == 13
        outcome = await prune_expired(
            pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1"
        )
    assert outcome.pruned == 6
    assert outcome.ranges == [[1, 1], [3, 4], [6, 6], [8, 9]]
    assert outcome.held_clients_skipped == {"C-HELD"}

    async with audit_context(s) as audit:
        entries = [e async for e in audit.ledger.scan_stored()]
        pruned = [e.entry.position for e in entries if is_pruned_marker(e.entry.event)]
        assert pruned == [1, 3, 4, 6, 8, 9]
        # the stored canonical bytes carry the payload: a prune drops them too (issue 9)
        assert all((e.entry.canonical is None) == e.entry.pruned for e in entries)
        for e in entries[:13]:
            assert e.entry.hash == hashes[e.entry.position]  # hashes never change
        marker = entries[0].entry.event
        assert "data" not in marker
        assert marker["event_id"] == str(entries[0].columns.event_id)
        hold = entries[12].entry.event
        assert (hold["type"], hold["client_id"], hold["actor"]["id"]) == (
            "audit.legal_hold_placed",
            "C-HELD",
            "auditor-1",
        )
        assert hold["data"] == {
            "hold_id": "H-1",
            "reason": "litigation",
            "case_reference": "CASE-1",
        }
        record = entries[13].entry.event
        assert record["type"] == "audit.pruned"
        assert record["actor"]["id"] == "ops-1"
        assert record["data"]["positions"] == [[1, 1], [3, 4], [6, 6], [8, 9]]
        assert record["data"]["held_clients_skipped"] == ["C-HELD"]

        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
        assert verdict.ok, verdict.reason  # the old checkpoint still holds
        assert verdict.checkpoints_checked == 1
        proof = await inclusion(audit, 1)  # a pruned entry is still proven in the tree
        assert proof.checkpoint.tree_size >= before.tree_size


async def test_a_client_under_legal_hold_is_refused(settings: BranchlineSettings) -> None:
    s = _settings(settings)
    async with audit_context(s) as writer:
        await _hold(writer.ledger, "C-HELD", "H-1")
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        with pytest.raises(RetentionError, match=r"legal hold.*D-11"):
            await prune_expired(
                pruner.ledger,
                retention_policy(s),
                FixedClock(T0),
                actor_id="ops-1",
                client_id="C-HELD",
            )
        assert await pruner.ledger.size() == 1


async def test_d11_a_hold_placed_then_lifted_and_a_reopened_relationship(
    settings: BranchlineSettings,
) -> None:
    s = _settings(settings)
    old = T0 - 11 * YEAR
    async with audit_context(s) as writer:
        await writer.ledger.append(
            [
                event(1, client_id="C-L"),
                lifecycle_event(90, CLOSED, client_id="C-L", at=old),
                event(2, client_id="C-R"),
                lifecycle_event(91, CLOSED, client_id="C-R", at=old),
                lifecycle_event(92, REOPENED, client_id="C-R", at=old + YEAR),
            ],
            now=old,
        )
        await _hold(writer.ledger, "C-L", "H-9")
        with pytest.raises(HoldRefused, match="already stands"):
            await _hold(writer.ledger, "C-L", "H-9")
        assert [h.hold_id for h in await list_holds(writer.ledger, "C-L")] == ["H-9"]
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        held = await prune_expired(
            pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1"
        )
    assert (held.pruned, held.held_clients_skipped) == (0, {"C-L"})

    async with audit_context(s) as writer:
        hold, _ = await lift_hold(
            writer.ledger,
            FixedClock(T0 - YEAR),
            actor=AUDITOR,
            hold_id="H-9",
            reason="matter_closed",
        )
        assert hold.client_id == "C-L"
        assert await list_holds(writer.ledger) == []
        with pytest.raises(HoldRefused, match="no standing"):
            await lift_hold(
                writer.ledger, FixedClock(T0), actor=AUDITOR, hold_id="H-9", reason="other"
            )
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        lifted = await prune_expired(
            pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1"
        )
    # C-L's records go once the hold is lifted; C-R came back: still a client, never pruned
    assert lifted.ranges == [[1, 2]]
    assert lifted.held_clients_skipped == set()


async def test_a_payload_dropped_behind_the_ledgers_back_is_found(
    settings: BranchlineSettings,
) -> None:
    """Making an entry look pruned without the retention procedure leaves it unnamed by any
    audit.pruned entry: verification locates it."""
    s = _settings(settings)
    async with audit_context(s) as audit:
        await audit.ledger.append([event(i) for i in range(5)], now=T0)
        row_event = (await audit.ledger.entry(3)).entry.event  # type: ignore[union-attr]
        marker = {k: v for k, v in row_event.items() if k != "data"}
        marker["redaction"] = {"reason": "retention", "pruned_at": "2030-01-01T00:00:00Z"}
        await behind_the_ledgers_back(
            s,
            "UPDATE audit_ledger SET event = $1::jsonb, pruned_at = now() WHERE position = 3",
            json.dumps(marker),
        )
        verdict = await verify_ledger(
            audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
        )
    assert not verdict.ok
    assert verdict.first_bad_position == 3
    assert "no audit.pruned entry" in (verdict.reason or "")

"""D-09/D-11: relationship ends and legal holds as the ledger records them (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from branchline_audit.domain.relationships import (
    ACCOUNT_CLOSED,
    ACCOUNT_REOPENED,
    HOLD_LIFTED,
    HOLD_PLACED,
    HoldRefusal,
    HoldRefused,
    LedgerFact,
    held_clients,
    hold_lifted_event,
    hold_placed_event,
    relationship_ends,
    standing_holds,
)

pytestmark = pytest.mark.unit

T = datetime(2026, 1, 1, tzinfo=UTC)


def fact(position: int, event_type: str, client: str, at: datetime, **data: str) -> LedgerFact:
    return LedgerFact(position, event_type, client, at, at, "auditor-1", data)


def test_the_latest_closure_ends_the_relationship_and_a_reopening_resumes_it() -> None:
    ends = relationship_ends(
        [
            fact(3, ACCOUNT_REOPENED, "C-1", T + timedelta(days=2)),
            fact(1, ACCOUNT_CLOSED, "C-1", T),
            fact(4, ACCOUNT_CLOSED, "C-2", T + timedelta(days=3)),
            fact(2, ACCOUNT_CLOSED, "C-3", T),
            fact(5, ACCOUNT_CLOSED, "C-3", T + timedelta(days=9)),
        ]
    )
    assert ends == {"C-2": T + timedelta(days=3), "C-3": T + timedelta(days=9)}


def test_a_backdated_closure_counts_from_when_it_was_recorded() -> None:
    backdated = LedgerFact(1, ACCOUNT_CLOSED, "C-1", T - timedelta(days=400), T)
    assert relationship_ends([backdated]) == {"C-1": T}


def test_holds_stand_until_lifted_by_id() -> None:
    holds = standing_holds(
        [
            fact(1, HOLD_PLACED, "C-1", T, hold_id="H-1", reason="litigation"),
            fact(2, HOLD_PLACED, "C-2", T, hold_id="H-2", reason="other"),
            fact(3, HOLD_LIFTED, "C-1", T, hold_id="H-1", reason="matter_closed"),
            fact(4, HOLD_PLACED, "C-2", T, hold_id="H-3", reason="other"),
        ]
    )
    assert sorted(holds) == ["H-2", "H-3"]
    assert held_clients(holds) == {"C-2"}
    assert holds["H-2"].placed_by == "auditor-1"


def test_a_pruned_hold_entry_without_payload_is_ignored() -> None:
    assert standing_holds([LedgerFact(1, HOLD_PLACED, "C-1", T, T)]) == {}


def test_hold_entries_name_who_and_why_and_refuse_nonsense() -> None:
    placed = hold_placed_event(
        now=T,
        actor_id="auditor-1",
        actor_role="auditor",
        client_id="C-1",
        hold_id="H-1",
        reason="litigation",
        case_reference="CASE-7",
        holds={},
    )
    assert placed["type"] == HOLD_PLACED
    assert placed["actor"] == {"id": "auditor-1", "role": "auditor"}
    assert placed["data"] == {"hold_id": "H-1", "reason": "litigation", "case_reference": "CASE-7"}
    holds = standing_holds([fact(1, HOLD_PLACED, "C-1", T, hold_id="H-1", reason="litigation")])
    with pytest.raises(HoldRefused) as twice:
        hold_placed_event(
            now=T,
            actor_id="a",
            actor_role="auditor",
            client_id="C-1",
            hold_id="H-1",
            reason="other",
            case_reference=None,
            holds=holds,
        )
    assert twice.value.reason is HoldRefusal.ALREADY_STANDS
    lifted = hold_lifted_event(
        now=T, actor_id="a", actor_role="admin", hold_id="H-1", reason="matter_closed", holds=holds
    )
    assert lifted["client_id"] == "C-1"
    with pytest.raises(HoldRefused) as unknown:
        hold_lifted_event(
            now=T, actor_id="a", actor_role="admin", hold_id="H-9", reason="other", holds=holds
        )
    assert unknown.value.reason is HoldRefusal.NOT_STANDING


def test_a_hold_names_a_client_or_a_member_of_staff_by_their_key() -> None:
    from branchline_audit.domain.relationships import hold_subject

    assert hold_subject(client_id="C-1", staff_id=None) == "C-1"
    assert hold_subject(client_id=None, staff_id="S-1") == "#staff/S-1"
    for both_or_none in ({"client_id": "C-1", "staff_id": "S-1"}, {}):
        with pytest.raises(ValueError, match="exactly one subject"):
            hold_subject(
                client_id=both_or_none.get("client_id"), staff_id=both_or_none.get("staff_id")
            )


def test_a_hold_on_a_member_of_staff_stands_until_lifted_and_names_them() -> None:
    placed = fact(1, HOLD_PLACED, "#staff/S-1", T, hold_id="H-S", reason="internal_investigation")
    holds = standing_holds([placed, fact(2, HOLD_PLACED, "C-1", T, hold_id="H-1", reason="other")])
    assert held_clients(holds) == {"#staff/S-1", "C-1"}
    assert holds["H-S"].staff_id == "S-1"
    assert holds["H-1"].staff_id is None
    lifted = fact(3, HOLD_LIFTED, "#staff/S-1", T, hold_id="H-S", reason="matter_closed")
    assert held_clients(standing_holds([placed, lifted])) == set()

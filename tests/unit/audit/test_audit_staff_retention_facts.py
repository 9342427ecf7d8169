"""Which entries are a member of staff's, and the retention facts their entries carry (D-11):
the end of employment an erasure request names (the latest wins), the clients their gifts
name; a hold on them or on such a client holds them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from branchline_audit.domain.staff import (
    EmploymentEnd,
    GiftClient,
    StaffRetentionState,
    staff_fact_of,
    staff_of_entry,
)

pytestmark = pytest.mark.unit

ENDED = datetime(2015, 3, 1, tzinfo=UTC)


def _staff(event_type: str, data: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {"type": event_type, "client_id": None, "staff_id": "S-1", "data": data, **envelope}


def test_an_entry_is_a_member_of_staffs_when_its_envelope_names_them_and_no_client() -> None:
    assert staff_of_entry(_staff("staff.qualified", {})) == "S-1"
    # a payload's staff_id (the adviser of a client's appointment) does not make it theirs
    booked = {"type": "appointment.booked", "client_id": "C-1", "data": {"staff_id": "S-1"}}
    assert staff_of_entry(booked) is None
    assert staff_of_entry({"type": "x", "client_id": "C-1", "staff_id": "S-1"}) is None
    assert staff_of_entry({"type": "audit.read", "client_id": None}) is None
    assert staff_of_entry(_staff("staff.qualified", {}, staff_id="")) is None


def test_the_facts_an_entry_carries() -> None:
    request = _staff("staff.erasure_requested", {"employment_ended_at": "2015-03-01T00:00:00Z"})
    assert staff_fact_of(7, request) == EmploymentEnd(7, "S-1", ENDED)
    given = _staff("staff.gift_recorded", {"client_id": "C-9", "value": "1"})
    assert staff_fact_of(8, given) == GiftClient(8, "S-1", "C-9")
    # still employed, a naive or malformed time, another type, a client's entry: no fact
    assert staff_fact_of(1, _staff("staff.erasure_requested", {"reason": "x"})) is None
    naive = _staff("staff.erasure_requested", {"employment_ended_at": "2015-03-01T00:00:00"})
    assert staff_fact_of(1, naive) is None
    bad = _staff("staff.erasure_requested", {"employment_ended_at": "soon"})
    assert staff_fact_of(1, bad) is None
    assert staff_fact_of(1, _staff("staff.training_recorded", {"client_id": "C-9"})) is None
    client_gift = {**given, "client_id": "C-1"}
    assert staff_fact_of(1, client_gift) is None


def test_the_latest_request_naming_an_end_sets_it_and_holds_reach_through_gifts() -> None:
    later = datetime(2020, 1, 1, tzinfo=UTC)
    state = StaffRetentionState.of(
        [EmploymentEnd(9, "S-1", later), EmploymentEnd(3, "S-1", ENDED)],
        [GiftClient(4, "S-1", "C-9"), GiftClient(5, "S-2", "C-8")],
    )
    assert state.employment_ends == {"S-1": later}
    assert state.held_by("S-1", frozenset({"C-9", "C-7"})) == {"C-9"}
    assert state.held_by("S-1", frozenset({"#staff/S-1"})) == {"#staff/S-1"}
    assert state.held_by("S-1", frozenset({"#staff/S-2", "C-8"})) == frozenset()
    assert state.held_by("S-3", frozenset({"#staff/S-3"})) == {"#staff/S-3"}

"""What readers see of personal fields (D-04, D-11)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from branchline_audit.domain.personal import (
    ClientDataState,
    PersonalDataPolicy,
    View,
    data_subject_of,
    restriction_of,
)
from branchline_audit.domain.records import pruned_marker, read_event

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def event(n: int, *, event_type: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    if data is None:
        data = {"fields": {"name": f"Wang {n}", "phone": "+86 138 0000 0000"}}
    return {
        "event_id": f"00000000-0000-0000-0000-{n:012d}",
        "type": event_type,
        "occurred_at": "2026-11-22T09:00:00Z",
        "source": "intake",
        "actor": {"id": "staff-1", "role": "teller"},
        "client_id": "C-1",
        "data": data,
    }


ACTIVE = ClientDataState.ACTIVE


def personal() -> dict[str, Any]:
    return event(1, event_type="client.personal_data_recorded")


def test_personal_values_are_masked_for_every_role_by_default() -> None:
    shown, view = PersonalDataPolicy().view(personal(), client_state=ACTIVE, reader_roles={"admin"})
    assert view is View.MASKED
    assert shown["data"]["fields"] == {"name": "[redacted]", "phone": "[redacted]"}


def test_a_late_entry_reason_is_masked_like_personal_values() -> None:
    """Issue #9: the envelope's late-entry reason is free text (sealed in the store)."""
    late = {**event(3, event_type="visit.arrived", data={"visit_id": "V-1"})}
    late["late_entry"] = {"reason": "bl:pii:v1:k1:AAAA:BBBB"}
    shown, view = PersonalDataPolicy().view(late, client_state=ACTIVE, reader_roles={"admin"})
    assert view is View.MASKED
    assert shown["late_entry"] == {"reason": "[redacted]"}
    assert shown["data"] == {"visit_id": "V-1"}
    full, view = PersonalDataPolicy(frozenset({"admin"})).view(
        late, client_state=ACTIVE, reader_roles={"admin"}
    )
    assert (full, view) == (late, View.FULL)


def test_events_without_personal_values_are_shown_whole_and_verifiable() -> None:
    original = event(2, event_type="visit.arrived", data={"visit_id": "V-1"})
    shown, view = PersonalDataPolicy().view(original, client_state=ACTIVE, reader_roles=set())
    assert (shown, view) == (original, View.FULL)


def test_stored_form_roles_see_the_stored_form_unless_restricted_or_shredded() -> None:
    policy = PersonalDataPolicy(frozenset({"auditor"}))
    original = personal()
    assert policy.view(original, client_state=ACTIVE, reader_roles={"auditor"}) == (
        original,
        View.FULL,
    )
    assert policy.view(original, client_state=ACTIVE, reader_roles={"rm"})[1] is View.MASKED
    shown, view = policy.view(
        original, client_state=ClientDataState.RESTRICTED, reader_roles={"auditor"}
    )
    assert view is View.RESTRICTED
    assert shown["data"]["fields"]["name"] == "[restricted]"
    shown, view = policy.view(
        original, client_state=ClientDataState.SHREDDED, reader_roles={"auditor"}
    )
    assert view is View.SHREDDED
    assert "Wang" not in str(shown)


def test_unknown_types_keep_nothing_and_audit_entries_everything() -> None:
    unknown = event(3, event_type="vendor.custom", data={"secret": "x"})
    shown, view = PersonalDataPolicy().view(unknown, client_state=ACTIVE, reader_roles=set())
    assert view is View.MASKED
    assert shown["data"] == {"secret": "[redacted]"}
    read = read_event(
        now=T0, subject="a", roles={"auditor"}, endpoint="GET x", filters={}, purpose=None
    )
    assert PersonalDataPolicy().view(read, client_state=ACTIVE, reader_roles=set())[1] is View.FULL
    marker = pruned_marker(personal(), pruned_at=T0)
    assert (
        PersonalDataPolicy().view(marker, client_state=ACTIVE, reader_roles=set())[1] is View.PRUNED
    )


# --- a member of staff is a data subject too (D-04: their own texts, key #staff/<id>) ----------


def staff_entry(n: int, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    entry = event(n, event_type=event_type, data=data)
    del entry["client_id"]
    return {**entry, "staff_id": "S-1", "actor": {"id": "dpo-1", "role": "admin"}}


def test_a_staff_erasure_and_its_shredding_change_what_is_shown_of_that_staff_only() -> None:
    requested = staff_entry(10, "staff.erasure_requested", {"reason": "bl:pii:v1:k:n:c"})
    shredded = staff_entry(
        11,
        "staff.personal_data_shredded",
        {"basis": "retention_ended", "erasure_event_id": "00000000-0000-0000-0000-000000000010"},
    )
    assert data_subject_of(requested) == "#staff/S-1"
    assert restriction_of(requested) == ("#staff/S-1", "restricted")
    assert restriction_of(shredded) == ("#staff/S-1", "shredded")
    # a client's erasure still names the client; other staff events change nothing
    assert restriction_of(event(12, event_type="client.erasure_requested")) == ("C-1", "restricted")
    assert restriction_of(staff_entry(13, "staff.qualified", {"category": "fund"})) is None


def test_a_shredded_staff_members_texts_are_shown_shredded_and_their_records_stay() -> None:
    training = staff_entry(
        14,
        "staff.training_recorded",
        {"hours": "2", "topic": "bl:pii:v1:k:n:c", "completed_at": "2026-11-22T09:00:00Z"},
    )
    shown, view = PersonalDataPolicy(frozenset({"auditor"})).view(
        training, client_state=ClientDataState.SHREDDED, reader_roles={"auditor"}
    )
    assert view is View.SHREDDED
    assert shown["data"] == {**training["data"], "topic": "[shredded]"}

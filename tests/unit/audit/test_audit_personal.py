"""What readers see of personal fields (D-04, D-11)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from branchline_audit.domain.personal import ClientDataState, PersonalDataPolicy, View
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

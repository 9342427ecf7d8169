"""D-04 for a member of staff at intake: their erasure request registers their key
(``#staff/<id>``) as restricted, and stream reads withhold their own texts once it is
restricted or shredded, leaving other staff's and clients' untouched."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.events import recorded_event

from branchline_intake.application.outcomes import Accepted, Refusal, Refused
from branchline_intake.application.privacy import readable, register_restrictions
from branchline_shared.crypto.keystore import InMemoryClientKeyStore, PrivacyState
from branchline_shared.events.envelope import Actor, RecordedEvent, staff_stream_id
from branchline_shared.eventstore.ports import StoredPosition

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SEALED = "bl:pii:v1:k:n:c"


def staff_event(staff_id: str, event_type: str, data: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=AT,
        recorded_at=AT,
        source="intake",
        actor=Actor(id="dpo-1", role="admin"),
        staff_id=staff_id,
        branch_id="BR-001",
        stream_id=staff_stream_id(staff_id),
        stream_version=1,
        data=data,
    )


def accepted(e: RecordedEvent) -> Accepted:
    return Accepted(StoredPosition(e.event_id, e.stream_id, 1, 1))


async def test_an_accepted_staff_erasure_request_restricts_their_key_only() -> None:
    keys = InMemoryClientKeyStore()
    erased = staff_event("S-1", "staff.erasure_requested", {"reason": SEALED})
    refused = staff_event("S-2", "staff.erasure_requested", {"reason": SEALED})
    await register_restrictions(
        keys,
        [erased, refused],
        [accepted(erased), Refused(Refusal.RULE_VIOLATION, "d", rule="D-04")],
    )
    assert await keys.states(["#staff/S-1", "#staff/S-2", "S-1"]) == {
        "#staff/S-1": PrivacyState.RESTRICTED,
        "#staff/S-2": PrivacyState.ACTIVE,
        "S-1": PrivacyState.ACTIVE,  # a client's id never names the staff's key
    }


async def test_reads_withhold_a_restricted_or_shredded_member_of_staffs_texts() -> None:
    keys = InMemoryClientKeyStore()
    training = {"hours": "2", "topic": SEALED, "completed_at": AT.isoformat()}
    events = [staff_event(s, "staff.training_recorded", training) for s in ("S-A", "S-R", "S-S")]
    client = recorded_event(
        "complaint.received",
        {"complaint_id": "CP-1", "severity": "general", "summary": SEALED},
        at=AT,
        client_id="S-S",  # a client whose id equals a shredded member of staff's
        branch_id="BR-001",
    )
    await keys.key_for("#staff/S-S")
    await keys.restrict("#staff/S-R", at=AT, source_event_id=uuid.uuid4())
    await keys.destroy("#staff/S-S")

    shown = await readable(keys, [*events, client])

    topics = {e.staff_id: e.data["topic"] for e in shown[:3]}
    assert topics == {"S-A": SEALED, "S-R": "[restricted]", "S-S": "[shredded]"}
    assert all(e.data["hours"] == "2" for e in shown[:3])  # the record itself stays
    assert shown[3].data["summary"] == SEALED  # the client's texts are untouched

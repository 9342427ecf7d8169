"""D-04 restriction at intake: an accepted erasure request registers the client as restricted,
and stream reads withhold the personal values of restricted and shredded clients."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.events import recorded_event

from branchline_intake.application.outcomes import Accepted, Refusal, Refused
from branchline_intake.application.privacy import readable, register_restrictions
from branchline_shared.crypto.keystore import InMemoryClientKeyStore, PrivacyState
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.ports import StoredPosition

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def event(client_id: str, event_type: str, data: dict[str, Any]) -> RecordedEvent:
    return recorded_event(event_type, data, at=AT, client_id=client_id, branch_id="BR-001")


def accepted(e: RecordedEvent) -> Accepted:
    return Accepted(StoredPosition(e.event_id, e.stream_id, 1, 1))


async def test_only_an_accepted_erasure_request_restricts() -> None:
    keys = InMemoryClientKeyStore()
    erased = event("C-1", "client.erasure_requested", {"reason": "bl:pii:v1:k:n:c"})
    refused = event("C-2", "client.erasure_requested", {"reason": "bl:pii:v1:k:n:c"})
    other = event("C-3", "visit.arrived", {"visit_id": "V-1"})
    await register_restrictions(
        keys,
        [erased, refused, other],
        [accepted(erased), Refused(Refusal.RULE_VIOLATION, "d", rule="D-04"), accepted(other)],
    )
    assert await keys.states(["C-1", "C-2", "C-3"]) == {
        "C-1": PrivacyState.RESTRICTED,
        "C-2": PrivacyState.ACTIVE,
        "C-3": PrivacyState.ACTIVE,
    }


async def test_reads_withhold_personal_values_of_restricted_and_shredded_clients() -> None:
    keys = InMemoryClientKeyStore()
    sealed = {"fields": {"name": "bl:pii:v1:k:n:c"}, "purpose": "service"}
    events = [event(c, "client.personal_data_recorded", sealed) for c in ("C-A", "C-R", "C-S")]
    await keys.key_for("C-S")
    await keys.restrict("C-R", at=AT, source_event_id=uuid.uuid4())
    await keys.destroy("C-S")
    shown = {e.client_id: e.data for e in await readable(keys, events)}
    assert shown["C-A"] == sealed  # active: the stored (sealed) form
    assert shown["C-R"] == {"fields": {"name": "[restricted]"}, "purpose": "service"}
    assert shown["C-S"] == {"fields": {"name": "[shredded]"}, "purpose": "service"}

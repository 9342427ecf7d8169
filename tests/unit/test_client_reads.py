"""The record of a read (D-11), written once for followup and intake: who read (the submitter,
as actor with their first role), what (service, route, client, their reads stream) and why."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from branchline_shared.access.reads import READ_EVENT_TYPE, client_read
from branchline_shared.events.catalogue import CATALOGUE_VERSION, EventType
from branchline_shared.events.envelope import RecordedEvent, Submitter

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def test_a_read_records_who_what_and_why() -> None:
    who = Submitter(sub="rm-7", roles=["rm", "supervisor"], branch_id="BR-001")

    event = client_read(
        who,
        source="followup",
        client_id="C-1",
        stream_id="followup-reads-C-1",
        stream_version=3,
        route="GET /v1/clients/{client_id}",
        purpose="annual review",
        at=AT,
    )

    assert event.type == READ_EVENT_TYPE == EventType.CLIENT_DATA_READ.value
    assert event.schema_version == CATALOGUE_VERSION[READ_EVENT_TYPE]
    assert (event.occurred_at, event.recorded_at) == (AT, AT)
    assert (event.source, event.client_id, event.branch_id) == ("followup", "C-1", "BR-001")
    assert (event.stream_id, event.stream_version) == ("followup-reads-C-1", 3)
    assert (event.actor.id, event.actor.role) == ("rm-7", "rm")
    assert event.submitted_by == who
    assert event.data == {
        "service": "followup",
        "route": "GET /v1/clients/{client_id}",
        "purpose": "annual review",
    }


def test_an_empty_purpose_is_none_and_a_roleless_reader_is_unknown() -> None:
    def read() -> RecordedEvent:
        return client_read(
            Submitter(sub="svc", roles=[], branch_id=None),
            source="intake",
            client_id="C-2",
            stream_id="reads-C-2",
            stream_version=1,
            route="GET /v1/streams/{stream_id}/events",
            purpose="",
            at=AT,
        )

    event = read()

    assert event.data == {"service": "intake", "route": "GET /v1/streams/{stream_id}/events"}
    assert event.actor.role == "unknown"
    assert event.event_id != read().event_id  # each read is its own record

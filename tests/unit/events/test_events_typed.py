"""Typed events (issue #9): a recorded event is decoded, upcast first, into the catalogue's
payload model; a payload that does not fit is refused naming the field, never the value. (A
consumer decodes each event once where it receives it, #12: the followup batch's test.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events import catalogue as c
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.events.typed import UnreadablePayload, decode, payload_as

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def recorded(event_type: str, data: dict[str, Any], *, schema_version: int = 1) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        schema_version=schema_version,
        occurred_at=AT,
        recorded_at=AT,
        source="test",
        actor=Actor(id="staff-1", role="teller"),
        client_id="C-1",
        stream_id="client-C-1",
        stream_version=1,
        data=data,
    )


def test_the_payload_is_the_catalogue_model_of_the_type() -> None:
    event = recorded("product.sold", {"product_id": "P-1", "amount": "1000.50"})
    payload = payload_as(decode(event), c.ProductSold)
    assert payload.product_id == "P-1"
    assert payload.amount == Decimal("1000.50")
    assert type(decode(event).payload) is c.ProductSold


def test_a_family_base_narrows_by_isinstance() -> None:
    event = recorded("complaint.acknowledged", {"complaint_id": "K-1", "owner_id": "rm-2"})
    payload = payload_as(decode(event), c.ComplaintEvent)
    assert payload.complaint_id == "K-1"
    assert isinstance(payload, c.ComplaintAcknowledged)
    assert payload.owner_id == "rm-2"


def test_an_older_version_is_upcast_before_it_is_parsed() -> None:
    # followup.completed v1 held free text as its outcome; v2 reads it as the code "other"
    event = recorded(
        "followup.completed",
        {"task_id": str(uuid.uuid4()), "outcome": "called, all fine"},
        schema_version=1,
    )
    typed = decode(event)
    assert typed.envelope.schema_version == c.CATALOGUE_VERSION["followup.completed"] == 2
    assert isinstance(typed.payload, c.FollowupCompleted)
    assert typed.payload.outcome is c.FollowupOutcome.OTHER


def test_v1_terms_are_read_as_named_terms_and_others() -> None:
    event = recorded(
        "product.terms_confirmed",
        {"product_id": "P-1", "terms": {"rate": "3%", "lock_in": "1 year"}},
        schema_version=1,
    )
    terms = payload_as(decode(event), c.ProductTermsConfirmed).terms
    assert terms.rate == "3%"
    assert terms.other == {"lock_in": "1 year"}


def test_a_sealed_personal_value_stays_sealed_whatever_its_length() -> None:
    sealed = SEALED_PREFIX + "k1:" + "A" * 6000  # longer than the clear text's bound (4,000)
    event = recorded(
        "consultation.opened", {"consultation_id": "Q-1", "channel": "online", "question": sealed}
    )
    assert payload_as(decode(event), c.ConsultationOpened).question == sealed


def test_a_missing_field_is_named() -> None:
    event = recorded("visit.closed", {"outcome": "normal"})
    with pytest.raises(UnreadablePayload) as caught:
        decode(event)
    assert caught.value.field == "visit_id"
    assert caught.value.event_id == event.event_id


def test_the_refusal_never_carries_the_value() -> None:
    event = recorded("complaint.received", {"complaint_id": "K-1", "severity": "secret-x"})
    with pytest.raises(UnreadablePayload) as caught:
        decode(event)
    assert caught.value.field == "severity"
    assert "secret-x" not in str(caught.value)


def test_an_unknown_type_is_unreadable() -> None:
    with pytest.raises(UnreadablePayload, match="unknown event type"):
        decode(recorded("visit.teleported", {}))


def test_a_newer_schema_version_is_unreadable() -> None:
    event = recorded("visit.closed", {"visit_id": "V-1", "outcome": "normal"}, schema_version=9)
    with pytest.raises(UnreadablePayload, match="newer"):
        decode(event)


def test_asking_for_the_wrong_model_is_refused() -> None:
    event = recorded("visit.closed", {"visit_id": "V-1", "outcome": "normal"})
    with pytest.raises(UnreadablePayload, match="not a ProductSold"):
        payload_as(decode(event), c.ProductSold)


def test_decoding_is_a_plain_function_each_call_parses() -> None:
    # #12: no cache behind it (the consumer decodes once and passes the result on)
    event = recorded("product.sold", {"product_id": "P-1", "amount": "1000.50"})
    first, second = decode(event), decode(event)
    assert first == second
    assert first.payload is not second.payload

"""Reading back Branchline's own stored envelopes without the checks made where they entered
(#12): for whatever the models accept, the stored validators make the very objects the models
make (class, fields, fields set, nested); they leave out the entry checks only, never the
structure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from tests.support.examples import EXAMPLE_PAYLOADS

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events import typed
from branchline_shared.events.catalogue import CATALOGUE_VERSION, UnknownEventType, parse_payload
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.stored_documents import (
    stored_envelope,
    stored_envelope_json,
    stored_payload,
)
from branchline_shared.events.typed import UnreadablePayload
from branchline_shared.kafka.wire import PoisonEvent, decode_event

pytestmark = pytest.mark.unit

SEALED = SEALED_PREFIX + "k1." + "A" * 300  # longer than any clear text it stands for


def _shape(value: Any) -> Any:
    """A model as its class, its fields set and its values, nested models alike."""
    if isinstance(value, BaseModel):
        return (
            type(value),
            value.model_fields_set,
            {name: _shape(getattr(value, name)) for name in type(value).model_fields},
        )
    if isinstance(value, tuple | list):
        return [_shape(item) for item in value]
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return (value, value.tzinfo)
    return (type(value), value)


@pytest.mark.parametrize("event_type", sorted(EXAMPLE_PAYLOADS))
def test_every_example_payload_is_read_back_as_the_model_reads_it(event_type: str) -> None:
    data = orjson.loads(orjson.dumps(EXAMPLE_PAYLOADS[event_type]))
    expected = parse_payload(event_type, data, stored=True)
    stored = orjson.loads(orjson.dumps(expected.model_dump(mode="json", exclude_unset=True)))

    assert _shape(stored_payload(event_type, stored)) == _shape(
        parse_payload(event_type, stored, stored=True)
    )


def test_a_sealed_value_longer_than_its_clear_bound_is_read_as_in_stored_data() -> None:
    data = {**EXAMPLE_PAYLOADS["complaint.received"], "summary": SEALED}
    expected = parse_payload("complaint.received", data, stored=True)

    assert _shape(stored_payload("complaint.received", data)) == _shape(expected)


def test_structure_is_still_checked() -> None:
    data = {**EXAMPLE_PAYLOADS["visit.arrived"], "unexpected": 1}
    with pytest.raises(ValidationError):
        stored_payload("visit.arrived", data)
    with pytest.raises(UnknownEventType):
        stored_payload("visit.teleported", {})
    envelope = orjson.loads(_json(_event()))
    for broken in ({**envelope, "event_id": "nope"}, {**envelope, "channel": "fax"}):
        with pytest.raises(ValidationError):
            stored_envelope(broken)
    with pytest.raises(ValidationError):  # exactly one subject, the model's own check
        stored_envelope({**envelope, "staff_id": "st-1"})


def test_only_the_entry_checks_are_left_out() -> None:
    # A zero-width space in a token: refused where it enters, not looked for again in what
    # Branchline itself stored (where it can only be if it was let in); an identifier's
    # pattern, checked in pydantic-core, stays.
    envelope = {**orjson.loads(_json(_event())), "correlation_id": "c\u200b1"}
    with pytest.raises(ValidationError):
        RecordedEvent.model_validate(envelope)
    assert stored_envelope(envelope).correlation_id == "c\u200b1"
    with pytest.raises(ValidationError):
        stored_envelope({**envelope, "actor": {"id": "s 1", "role": "teller"}})


def _event(
    *,
    occurred_at: datetime = datetime(2026, 12, 3, 10, 0, tzinfo=timezone(timedelta(hours=8))),
    actor_id: str = "s-1",
    late: str | None = None,
    channel: str | None = "walk_in",
    correlation_id: str | None = None,
    submitted: bool = False,
    synthetic: bool = False,
    event_type: str = "visit.arrived",
) -> RecordedEvent:
    return RecordedEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "type": event_type,
            "schema_version": CATALOGUE_VERSION.get(event_type, 1),
            "occurred_at": occurred_at.isoformat(),
            "recorded_at": "2026-12-03T02:00:01.123456Z",
            "source": "intake",
            "actor": {"id": actor_id, "role": "teller"},
            "client_id": "C-1",
            "branch_id": "BR-1",
            "channel": channel,
            "stream_id": "client-C-1",
            "stream_version": 3,
            "correlation_id": correlation_id,
            "late_entry": None if late is None else {"reason": late},
            "data": EXAMPLE_PAYLOADS[event_type],
            "submitted_by": {"sub": actor_id, "roles": ["teller"]} if submitted else None,
            "synthetic": synthetic,
        },
        context={"stored": True},
    )


def _json(event: RecordedEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


_OFFSETS = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@st.composite
def recorded(draw: st.DrawFn) -> RecordedEvent:
    moment = draw(
        st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30))
    ).replace(tzinfo=UTC)
    return _event(
        occurred_at=moment.astimezone(draw(_OFFSETS)),
        actor_id=draw(st.sampled_from(["s-1", "a.b:c@d"])),
        late=draw(st.sampled_from([None, "forgot", SEALED])),
        channel=draw(st.sampled_from([None, "walk_in", "app"])),
        correlation_id=draw(st.sampled_from([None, "c-1", "x:y.z"])),
        submitted=draw(st.booleans()),
        synthetic=draw(st.booleans()),
        event_type=draw(st.sampled_from(sorted(EXAMPLE_PAYLOADS))),
    )


@settings(max_examples=300, deadline=None)
@given(recorded(), st.booleans())
def test_a_stored_envelope_is_read_back_as_the_model_reads_it(
    event: RecordedEvent, drop_defaults: bool
) -> None:
    # as stored (every field), or as recorded before a field existed (defaults left out)
    stored = event.model_dump(mode="json", exclude_defaults=drop_defaults)
    text = orjson.dumps(stored)
    expected = RecordedEvent.model_validate_json(text)

    assert _shape(stored_envelope_json(text)) == _shape(expected)
    assert _shape(stored_envelope(orjson.loads(text))) == _shape(expected)
    assert _shape(decode_event(text, from_store=True)) == _shape(decode_event(text))
    full, trusted = typed.decode(expected), typed.decode(expected, from_store=True)
    assert _shape(trusted.payload) == _shape(full.payload)
    assert _shape(trusted.envelope) == _shape(full.envelope)


def test_an_upcast_payload_is_read_with_every_check() -> None:
    # an upcaster's output was never stored as it is: it goes through the model's checks
    data = {**EXAMPLE_PAYLOADS["followup.completed"], "outcome": "called", "note": "a\x01b"}
    event = _event(event_type="followup.completed").model_copy(
        update={"schema_version": 1, "data": data}
    )

    with pytest.raises(UnreadablePayload, match="control character"):
        typed.decode(event, from_store=True)


def test_what_is_not_an_envelope_is_still_poison() -> None:
    with pytest.raises(PoisonEvent):
        decode_event(b"{}", from_store=True)
    with pytest.raises(PoisonEvent):
        decode_event(b"not json", from_store=True)

"""Plain topic messages validated without the checks that cannot refuse them (#12): whatever a
message, the plain path makes the very envelope and payload the models make, or leaves the
message to them (never accepting what they refuse); each condition of ``is_plain`` is needed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from tests.support.examples import EXAMPLE_PAYLOADS

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events import typed
from branchline_shared.events.bounded import STORED
from branchline_shared.events.catalogue import CATALOGUE_VERSION, payload_model
from branchline_shared.events.checked_documents import checked_document_validator
from branchline_shared.events.plain_messages import is_plain, plain_event, plain_payload
from branchline_shared.events.typed import UnreadablePayload
from branchline_shared.kafka.wire import PoisonEvent, decode_current_event

pytestmark = pytest.mark.unit


def _shape(value: Any) -> Any:
    """A model as its class, its fields set and its values (time zones too), nested alike."""
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
    if hasattr(value, "tzinfo"):
        return (value, value.tzinfo)
    return (type(value), value)


def _envelope(event_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "schema_version": CATALOGUE_VERSION.get(event_type, 1),
        "occurred_at": "2026-12-03T10:00:00+08:00",
        "recorded_at": "2026-12-03T02:00:01.123456Z",
        "source": "intake",
        "actor": {"id": "s-1", "role": "teller"},
        "client_id": "C-1",
        "branch_id": "BR-1",
        "channel": "walk_in",
        "stream_id": "client-C-1",
        "stream_version": 3,
        "data": EXAMPLE_PAYLOADS[event_type],
        **fields,
    }


def _outcomes(value: bytes) -> None:
    """The plain path against the models on ``value``: equal where it answers, and silent
    (None) wherever the models refuse."""
    try:
        expected = decode_current_event(value)
    except PoisonEvent:
        assert plain_event(value) is None
        return
    event = plain_event(value)
    if event is None:
        return
    assert _shape(event) == _shape(expected)
    try:
        decoded = typed.decode(expected)
    except UnreadablePayload:
        assert plain_payload(event) is None
        return
    payload = plain_payload(event)
    if payload is not None:
        assert _shape(payload.payload) == _shape(decoded.payload)
        assert _shape(payload.envelope) == _shape(decoded.envelope)


@pytest.mark.parametrize("event_type", sorted(EXAMPLE_PAYLOADS))
def test_every_example_event_is_plain_and_read_as_the_models_read_it(event_type: str) -> None:
    value = orjson.dumps(_envelope(event_type))
    assert is_plain(value)
    event = plain_event(value)
    assert event is not None
    assert _shape(event) == _shape(decode_current_event(value))
    decoded = plain_payload(event)
    assert decoded is not None
    assert _shape(decoded.payload) == _shape(typed.decode(event).payload)


_TEXT = st.lists(
    st.sampled_from(
        [
            *"aZ9 .:-_@/",
            *("\x00", "\x01", "\t", "\x7f", "\x85", "\u200b", "é", "\\", '"'),
            *(SEALED_PREFIX, SEALED_PREFIX + "k1.AAAA"),
        ]
    ),
    max_size=8,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(EXAMPLE_PAYLOADS)),
    st.sampled_from(["actor_id", "client_id", "correlation_id", "type", "data", "role"]),
    _TEXT,
    st.booleans(),
)
def test_any_message_is_read_as_the_models_read_it_or_left_to_them(
    event_type: str, where: str, text: str, ascii_only: bool
) -> None:
    envelope = _envelope(event_type)
    if where == "actor_id":
        envelope["actor"] = {"id": text, "role": "teller"}
    elif where == "role":
        envelope["actor"] = {"id": "s-1", "role": text}
    elif where == "data":
        data = dict(envelope["data"])
        strings = sorted(k for k, v in data.items() if isinstance(v, str))
        if strings:
            data[strings[0]] = text
        envelope["data"] = data
    else:
        envelope[where] = text
    value = orjson.dumps(envelope)
    if ascii_only:
        # the same document with every non-ASCII character escaped, as other writers spell it
        value = json.dumps(orjson.loads(value), ensure_ascii=True).encode()
    _outcomes(value)


def test_each_condition_of_a_plain_message_is_needed() -> None:
    # A free text (a complaint's summary) the checked validator takes and the models refuse:
    # a control character spelled as an escape, a raw DEL, a raw C1 control, the reserved
    # prefix inside the text. Each is possible only in a message that is not plain, which the
    # models decode.
    checked = checked_document_validator(payload_model("complaint.received"))
    for spelled in (
        b'"a\\u0001b"',
        b'"a\x7fb"',
        '"a\u0085b"'.encode(),  # a C1 control, raw in UTF-8
        ('"a' + SEALED_PREFIX + 'b"').encode(),
    ):
        data = orjson.dumps(EXAMPLE_PAYLOADS["complaint.received"] | {"summary": "S"})
        data = data.replace(b'"S"', spelled)
        assert checked.validate_json(data, context={STORED: True}) is not None
        value = orjson.dumps(_envelope("complaint.received", data={})).replace(
            b'"data":{}', b'"data":' + data
        )
        event = decode_current_event(value)
        with pytest.raises(UnreadablePayload):
            typed.decode(event)
        assert not is_plain(value)
        assert plain_event(value) is None
    # a non-ASCII token, escaped: the checked pattern would refuse it, the model takes it
    escaped = orjson.dumps(_envelope("visit.arrived", correlation_id="c-1"))
    escaped = escaped.replace(b'"c-1"', b'"c-\\u00e91"', 1)
    assert not is_plain(escaped)
    assert plain_event(escaped) is None
    assert decode_current_event(escaped).correlation_id == "c-\u00e91"


def test_an_older_schema_version_is_left_to_the_models() -> None:
    value = orjson.dumps(_envelope("followup.completed", schema_version=1))
    assert is_plain(value)
    assert plain_event(value) is None


def test_what_is_not_an_envelope_is_left_to_the_models() -> None:
    for value in (None, b"{}", b"not json", b"[1]"):
        assert plain_event(value) is None

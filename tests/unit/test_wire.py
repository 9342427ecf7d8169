"""The wire format: poison is recognised, older versions are upcast for readers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.kafka.wire import PoisonEvent, decode_current_event, decode_event

pytestmark = pytest.mark.unit


def registered(schema_version: int = 1) -> bytes:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    return (
        RecordedEvent(
            event_id=uuid.uuid4(),
            type="client.registered",
            schema_version=schema_version,
            occurred_at=now,
            recorded_at=now,
            source="intake",
            actor=Actor(id="s", role="teller"),
            client_id="C-1",
            stream_id="client-C-1",
            stream_version=1,
            data={"client_type": "individual", "rm_id": "rm-1"},
        )
        .model_dump_json()
        .encode()
    )


@pytest.mark.parametrize("value", [None, b"", b"{not json", b'{"type": "client.registered"}'])
def test_what_is_not_an_envelope_is_poison(value: bytes | None) -> None:
    with pytest.raises(PoisonEvent):
        decode_event(value)


def test_a_current_event_decodes_unchanged() -> None:
    value = registered()
    assert decode_current_event(value) == decode_event(value)


def test_an_event_newer_than_this_reader_is_poison_with_the_reason() -> None:
    with pytest.raises(PoisonEvent, match=r"client\.registered v9"):
        decode_current_event(registered(schema_version=9))
    assert decode_event(registered(schema_version=9)).schema_version == 9  # the ledger keeps it

"""The wire format: poison is recognised, older versions are upcast for readers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.kafka.wire import (
    MAX_POSITION,
    PoisonEvent,
    SourcePosition,
    decode_current_event,
    decode_event,
    source_position,
)

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


def headers(source: bytes, position: bytes) -> list[tuple[str, bytes]]:
    return [("event_id", b"x"), ("source", source), ("global_position", position)]


@pytest.mark.parametrize(
    ("source", "position", "expected"),
    [
        (b"intake", b"1", SourcePosition("intake", 1)),
        (b"followup", b"42", SourcePosition("followup", 42)),
        (b"intake", b"9223372036854775807", SourcePosition("intake", MAX_POSITION)),
    ],
)
def test_a_relay_position_is_read_as_written(
    source: bytes, position: bytes, expected: SourcePosition
) -> None:
    assert source_position(headers(source, position)) == expected


@pytest.mark.parametrize(
    ("source", "position"),
    [
        (b"intake", b"9223372036854775808"),  # past a bigint: no store holds it
        (b"intake", b"99999999999999999999999"),
        (b"intake", b"0"),  # identities start at 1
        (b"intake", b"-1"),
        (b"intake", b"+7"),
        (b"intake", b" 7"),  # int() would take these three
        (b"intake", b"1_000"),
        (b"intake", "٣".encode()),  # a digit, but not ASCII
        (b"intake", b""),
        (b"intake", b"\xff"),
        (b"", b"7"),
        (b"in take", b"7"),
        (b"\xffintake", b"7"),
        (b"x" * 65, b"7"),
    ],
)
def test_a_position_no_relay_of_ours_writes_is_no_position(source: bytes, position: bytes) -> None:
    assert source_position(headers(source, position)) is None


def test_a_message_without_relay_headers_has_no_position() -> None:
    assert source_position([("source", b"intake")]) is None
    assert source_position([("global_position", b"7")]) is None

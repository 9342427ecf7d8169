"""The wire format of events on Kafka: JSON of the envelope, headers for routing."""

from __future__ import annotations

from typing import Any

import orjson

from branchline_shared.events.envelope import RecordedEvent

Headers = list[tuple[str, bytes]]


def encode_event(envelope: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope)


def event_headers(event: RecordedEvent, global_position: int) -> Headers:
    return [
        ("event_id", str(event.event_id).encode()),
        ("type", event.type.encode()),
        ("source", event.source.encode()),
        ("global_position", str(global_position).encode()),
    ]


class PoisonEvent(ValueError):
    """A message that can never be processed: it goes to the dead-letter topic with the reason."""


def decode_event(value: bytes | None) -> RecordedEvent:
    if value is None:
        raise PoisonEvent("empty message value")
    try:
        return RecordedEvent.model_validate_json(value)
    except ValueError as exc:
        raise PoisonEvent(f"not a Branchline event envelope: {exc}") from exc

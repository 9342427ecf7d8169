"""The wire format of events on Kafka: JSON of the envelope, headers for routing."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.stored_documents import stored_envelope_json
from branchline_shared.events.upcasting import MissingUpcaster, NewerSchemaVersion, upcast
from branchline_shared.logging_setup import describe_error

Headers = list[tuple[str, bytes]]


def encode_event(envelope: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope)


REQUEUED = "requeued"
"""The header of a copy published again after its first publication (a repair re-queued it,
eventstore migration 005); its value is ``1``. A first publication has none."""


def event_headers(event: RecordedEvent, global_position: int, *, requeued: bool = False) -> Headers:
    return _headers(str(event.event_id), event.type, event.source, global_position, requeued)


def stored_event_headers(
    envelope: Mapping[str, Any], global_position: int, *, requeued: bool = False
) -> Headers:
    """:func:`event_headers` of an envelope as an event store holds it: read from the stored
    document without validating it again. The store wrote it from a validated
    :class:`RecordedEvent` (its ``event_id`` already in canonical form) and never changes it
    (append-only); validating each one to build three headers was most of the relay's
    Python per event (#12)."""
    fields = (envelope.get("event_id"), envelope.get("type"), envelope.get("source"))
    if not all(isinstance(value, str) for value in fields):
        # Never publish a message the consumers cannot route: not an envelope we wrote.
        raise ValueError("a stored envelope without its event_id, type or source")
    event_id, event_type, source = cast("tuple[str, str, str]", fields)
    return _headers(event_id, event_type, source, global_position, requeued)


def _headers(
    event_id: str, event_type: str, source: str, global_position: int, requeued: bool
) -> Headers:
    headers = [
        ("event_id", event_id.encode()),
        ("type", event_type.encode()),
        ("source", source.encode()),
        ("global_position", str(global_position).encode()),
    ]
    if requeued:
        headers.append((REQUEUED, b"1"))
    return headers


def is_first_publication_from(headers: Sequence[tuple[str, bytes]], source: bytes) -> bool:
    """Whether a relay published this message as the first copy of an event the store
    ``source`` recorded: its ``source`` header is ``source`` and it has no ``requeued``
    header. Read from the headers alone, before (and without) decoding the value (#12)."""
    own = False
    for key, value in headers:
        if key == REQUEUED:
            return False
        if key == "source":
            if value != source:
                return False
            own = True
    return own


@dataclass(frozen=True)
class SourcePosition:
    """Where a published event sits in the event store that wrote it: the store (the
    envelope's ``source``) and its global position there."""

    source: str
    global_position: int


MAX_POSITION = 2**63 - 1
"""A store's global positions are PostgreSQL ``bigint`` identities: at least 1, at most this."""
_SOURCE = re.compile(rb"[\x21-\x7e]{1,64}")
"""A store's name as a relay writes it (``intake``, ``followup``): visible ASCII, short."""


def source_position(headers: Sequence[tuple[str, bytes]]) -> SourcePosition | None:
    """The store position a relay put in a message's headers (None: not relayed by us).

    Headers are read at an edge: only what a relay of ours writes is taken, a store name of
    printable ASCII and a position of plain decimal digits within a ``bigint`` identity.
    Anything else (a sign, spaces, ``_``, a number no store can hold) is treated as no
    position at all, as before for text that is not a number, so a forged header can neither
    reach the read models' ``bigint`` columns nor pass for a real position."""
    found = dict(headers)
    source, position = found.get("source"), found.get("global_position")
    if source is None or position is None:
        return None
    if _SOURCE.fullmatch(source) is None:
        return None
    if not (0 < len(position) <= 19 and position.isdigit()):  # bytes.isdigit: ASCII only
        return None
    number = int(position)
    if not 1 <= number <= MAX_POSITION:
        return None
    return SourcePosition(source.decode("ascii"), number)


class PoisonEvent(ValueError):
    """A message that can never be processed: it goes to the dead-letter topic with the reason."""


def decode_current_event(value: bytes | None, *, from_store: bool = False) -> RecordedEvent:
    """Decode and bring to the current schema version of its type (readers that interpret
    events; the audit ledger records them as published, with :func:`decode_event`).
    ``from_store``: see :func:`decode_event`."""
    event = decode_event(value, from_store=from_store)
    try:
        return upcast(event)
    except (MissingUpcaster, NewerSchemaVersion) as exc:
        raise PoisonEvent(f"cannot read {event.type} v{event.schema_version}: {exc}") from exc


def decode_event(value: bytes | None, *, from_store: bool = False) -> RecordedEvent:
    """``from_store``: ``value`` was read from one of Branchline's own event stores, never
    from a topic: it is read without the checks made where it entered (#12,
    :mod:`~branchline_shared.events.stored_documents`)."""
    if value is None:
        raise PoisonEvent("empty message value")
    try:
        if from_store:
            return stored_envelope_json(value)
        return RecordedEvent.model_validate_json(value)
    except ValueError as exc:
        # The reason travels in a dead-letter header and in logs: never the values (D-04).
        raise PoisonEvent(f"not a Branchline event envelope: {describe_error(exc)}") from exc

"""Topic messages whose every string is plain printable ASCII, validated without the per-field
Python checks that cannot refuse them (#12).

A message from a topic crosses an edge (anyone who can reach the broker may publish), so it is
validated with every check of its models, as :func:`~branchline_shared.kafka.wire.decode_event`
and :func:`~branchline_shared.events.typed.decode` do. Some of those checks, each a Python call
per field, can only refuse a character outside printable ASCII or the reserved prefix of sealed
values (:mod:`~branchline_shared.events.checked_documents`: ``clean_text``, ``Sealable``,
``clean_token`` as a pattern of printable ASCII without the space). A message is *plain*
(:func:`is_plain`) when its bytes are ASCII and hold no backslash, no DEL and not the prefix:
the JSON parser refuses a raw control character inside a string, and without a backslash no
string holds an escape, so every string it decodes (keys and values) is printable ASCII, spelled
in the bytes as it is, and none holds the prefix. For such a message those checks cannot refuse
anything, and the validators of
:func:`~branchline_shared.events.checked_documents.checked_document_validator` (every other
check kept, ``Instant``'s among them) accept what the models accept and make the very objects
they make. What they refuse, and every message that is not plain, is decoded by the models
themselves, which refuse it, or accept it, and name the error as they always did.

Relays publish the stored envelope as compact JSON (``orjson``), so Branchline's own messages
are plain unless a value holds a non-ASCII character, an escape or a sealed value.
"""

from __future__ import annotations

from functools import cache

from pydantic_core import SchemaValidator

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.bounded import STORED
from branchline_shared.events.catalogue import PAYLOAD_MODELS
from branchline_shared.events.checked_documents import checked_document_validator
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded, TypedEvent
from branchline_shared.events.upcasting import MissingUpcaster, NewerSchemaVersion, upcast

__all__ = ["is_plain", "plain_event", "plain_payload"]

_SEALED = SEALED_PREFIX.encode()


def is_plain(value: bytes) -> bool:
    """Whether every string of the JSON document ``value`` is printable ASCII without the
    reserved prefix (module docstring); False says nothing about the message."""
    return value.isascii() and b"\\" not in value and b"\x7f" not in value and _SEALED not in value


@cache
def _envelope() -> SchemaValidator:
    return checked_document_validator(RecordedEvent)


@cache
def _payload(event_type: str) -> SchemaValidator | None:
    model = PAYLOAD_MODELS.get(event_type)
    return None if model is None else checked_document_validator(model)


def plain_event(value: bytes | None) -> RecordedEvent | None:
    """``decode_current_event(value)`` of a topic message: the very envelope it makes, for a
    plain message (:func:`is_plain`) at its type's current schema version. None for any other
    message, or one the checked validator refuses: the caller decodes it with every check
    (which refuses it, or accepts it, as it always did)."""
    if value is None or not is_plain(value):
        return None
    try:
        event: RecordedEvent = _envelope().validate_json(value)
    except ValueError:
        return None
    try:
        if upcast(event) is not event:
            return None  # an upcaster's output was never checked as it is
    except (MissingUpcaster, NewerSchemaVersion):
        return None
    return event


def plain_payload(event: RecordedEvent) -> Decoded | None:
    """``typed.decode(event)`` of an envelope :func:`plain_event` made (only of those: its
    strings are plain), the payload validated as in stored data, as topic payloads are. None
    when the checked validator refuses it or its type is unknown: the caller decodes it with
    every check (which names the error)."""
    validator = _payload(event.type)
    if validator is None:
        return None
    try:
        payload = validator.validate_python(event.data, context={STORED: True})
    except ValueError:
        return None
    return TypedEvent(event, payload)

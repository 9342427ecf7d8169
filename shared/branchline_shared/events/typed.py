"""Typed events: a recorded envelope decoded once into the catalogue's payload model.

Readers (followup, audit) never look into ``RecordedEvent.data`` by string key: they ask for
the payload model of the event's type, brought to the current schema version first
(:func:`~branchline_shared.events.upcasting.upcast`), and read its attributes. A field renamed
in the catalogue then fails ``mypy --strict`` wherever it is read, not production.

Payloads are parsed as stored data: a sealed personal value (``bl:pii:v1:...``) stands for the
clear one and stays a sealed string in the model; nothing here unseals.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from branchline_shared.events.catalogue import EventPayload, UnknownEventType, parse_payload
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.upcasting import MissingUpcaster, NewerSchemaVersion, upcast

__all__ = ["TypedEvent", "UnreadablePayload", "decode", "payload_as", "payload_of"]

P = TypeVar("P", bound=EventPayload)


class UnreadablePayload(ValueError):
    """An event whose payload is not what the catalogue says its type holds (or whose type or
    schema version this reader does not know). The message names the field and the problem,
    never the value (it may be personal, D-04)."""

    def __init__(self, event: RecordedEvent, field: str, problem: str) -> None:
        where = f"data.{field} " if field else ""
        super().__init__(f"{event.type} {event.event_id}: {where}{problem}")
        self.event_type = event.type
        self.event_id = event.event_id
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class TypedEvent(Generic[P]):
    """The envelope (at the current schema version) and its typed payload."""

    envelope: RecordedEvent
    payload: P


_RECENT = 16
"""How many decoded events :func:`decode` keeps (the last ones it decoded)."""
_decoded: OrderedDict[int, tuple[RecordedEvent, dict[str, Any], TypedEvent[EventPayload]]] = (
    OrderedDict()
)
_decoded_lock = threading.Lock()


def decode(event: RecordedEvent) -> TypedEvent[EventPayload]:
    """``event`` upcast and its payload parsed by the catalogue (raises UnreadablePayload).

    The same event object is decoded once (#12): a consumer's helpers each ask for the
    payload of the event being applied (the followup rebuild parsed about 2.2 payloads per
    event, about a tenth of its Python). The last few results are kept by the event object's
    identity, holding the object (its id cannot be reused meanwhile) and checked against its
    ``data`` too (an envelope copied with other data is another object anyway). Envelopes and
    payloads are frozen, so a result handed out twice cannot be changed by either caller;
    failures are not kept (they raise again)."""
    key = id(event)
    with _decoded_lock:  # callers in worker threads too: the cache stays consistent
        kept = _decoded.get(key)
        if kept is not None and kept[0] is event and kept[1] is event.data:
            _decoded.move_to_end(key)
            return kept[2]
    typed = _decode(event)
    with _decoded_lock:
        _decoded[key] = (event, event.data, typed)
        if len(_decoded) > _RECENT:
            _decoded.popitem(last=False)
    return typed


def _decode(event: RecordedEvent) -> TypedEvent[EventPayload]:
    try:
        current = upcast(event)
    except (MissingUpcaster, NewerSchemaVersion) as exc:
        raise UnreadablePayload(event, "", str(exc)) from exc
    try:
        payload = parse_payload(current.type, current.data, stored=True)
    except UnknownEventType as exc:
        raise UnreadablePayload(event, "", str(exc)) from exc
    except ValidationError as exc:
        field, problem = _first_problem(exc)
        raise UnreadablePayload(event, field, problem) from None
    return TypedEvent(current, payload)


def payload_of(event: RecordedEvent) -> EventPayload:
    """The typed payload of ``event`` (upcast first); raises :class:`UnreadablePayload`."""
    return decode(event).payload


def payload_as(event: RecordedEvent, model: type[P]) -> P:
    """The payload of ``event`` as ``model``, the catalogue's model of its type; raises
    :class:`UnreadablePayload` when the payload is unreadable or of another model (a caller
    asking for the wrong model for the type is a bug, reported the same way)."""
    payload = payload_of(event)
    if not isinstance(payload, model):
        raise UnreadablePayload(event, "", f"is a {type(payload).__name__}, not a {model.__name__}")
    return payload


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    errors: list[Any] = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "", "is invalid"
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ()))
    return field, str(first.get("msg", "is invalid"))

"""Typed events: a recorded envelope decoded once into the catalogue's payload model.

Readers (followup, audit) never look into ``RecordedEvent.data`` by string key: they ask for
the payload model of the event's type, brought to the current schema version first
(:func:`~branchline_shared.events.upcasting.upcast`), and read its attributes. A field renamed
in the catalogue then fails ``mypy --strict`` wherever it is read, not production.

Payloads are parsed as stored data: a sealed personal value (``bl:pii:v1:...``) stands for the
clear one and stays a sealed string in the model; nothing here unseals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import ValidationError

from branchline_shared.events.catalogue import EventPayload, UnknownEventType, parse_payload
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.stored_documents import stored_payload
from branchline_shared.events.upcasting import MissingUpcaster, NewerSchemaVersion, upcast

__all__ = ["Decoded", "TypedEvent", "UnreadablePayload", "decode", "payload_as"]

P = TypeVar("P", bound=EventPayload)
P_co = TypeVar("P_co", bound=EventPayload, covariant=True)


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


@dataclass(frozen=True, slots=True)
class TypedEvent(Generic[P_co]):
    """The envelope (at the current schema version) and its typed payload."""

    envelope: RecordedEvent
    payload: P_co


Decoded: TypeAlias = TypedEvent[EventPayload]
"""An event of any type, decoded: what a consumer hands the code that reads its payload."""


def decode(event: RecordedEvent, *, from_store: bool = False) -> Decoded:
    """``event`` upcast and its payload parsed by the catalogue (raises UnreadablePayload).

    ``from_store``: ``event`` was read from one of Branchline's own event stores (not from a
    topic or a request): its payload is read without the checks made where it entered
    (:mod:`~branchline_shared.events.stored_documents`), unless an upcaster changed it.

    A consumer decodes each event once, where it receives it (the followup worker's batch,
    the rebuild's replay, a re-projection's journal), and hands the result to whatever reads
    the payload (#12: the followup projection's helpers used to decode the same envelope again,
    about 2.2 parses per event)."""
    try:
        current = upcast(event)
    except (MissingUpcaster, NewerSchemaVersion) as exc:
        raise UnreadablePayload(event, "", str(exc)) from exc
    try:
        if from_store and current is event:
            payload = stored_payload(current.type, current.data)
        else:
            payload = parse_payload(current.type, current.data, stored=True)
    except UnknownEventType as exc:
        raise UnreadablePayload(event, "", str(exc)) from exc
    except ValidationError as exc:
        field, problem = _first_problem(exc)
        raise UnreadablePayload(event, field, problem) from None
    return TypedEvent(current, payload)


def payload_as(event: Decoded, model: type[P]) -> P:
    """The payload of ``event`` as ``model``, the catalogue's model of its type; raises
    :class:`UnreadablePayload` when it is of another model (a caller asking for the wrong
    model for the type is a bug, reported the way an unreadable payload is)."""
    payload = event.payload
    if not isinstance(payload, model):
        raise UnreadablePayload(
            event.envelope, "", f"is a {type(payload).__name__}, not a {model.__name__}"
        )
    return payload


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    errors: list[Any] = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "", "is invalid"
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ()))
    return field, str(first.get("msg", "is invalid"))

"""Reading back what Branchline wrote to its own append-only event stores, without the
per-field checks made where each value entered (#12).

Every envelope and payload in an event store was validated, with every check of
:mod:`branchline_shared.events.bounded`, before it was written (intake's submissions; the
events a service builds itself as models), and the stores are append-only. Read back, four of
those checks, each a Python call per field, cannot refuse a row the same checks let in:

* ``clean_text`` and ``clean_token`` (the characters refused in text and identifiers): left
  out;
* ``Sealable`` (``_sealable``) and the late entry's ``_clear_or_sealed``: a sealed value is
  taken as it is (as in stored data), anything else goes to the field's own schema; the
  well-formedness of the sealed value is not checked again;
* ``Instant`` (``_instant``): the RFC 3339 text is parsed as the check parses it, without its
  format and window checks (the parsed instant is the one the check makes).

:func:`stored_validator` builds a model's core schema with those replaced; every other check
(types, lengths, patterns, enums, the models' own validators) stays, and the objects it makes
are the model's (same class, fields, fields set). Only for rows read from Branchline's own
event stores: never for a topic's message, a request or anything else that crosses an edge
(those are validated by the models themselves).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic_core import SchemaValidator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.bounded import STORED, _instant, _sealable, clean_text, clean_token
from branchline_shared.events.catalogue import EventPayload, payload_model
from branchline_shared.events.checked_documents import rewrite_schema
from branchline_shared.events.envelope import RecordedEvent, _clear_or_sealed

__all__ = ["stored_envelope", "stored_envelope_json", "stored_payload", "stored_validator"]

_LEFT_OUT = (clean_text, clean_token)
_SEALABLE = (_sealable, _clear_or_sealed)


def _stored_instant(value: Any) -> Any:
    # the parse of bounded._instant, for a text it has accepted before
    if isinstance(value, str):
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return value


def _stored_sealable(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, str) and value.startswith(SEALED_PREFIX):
        return value
    return handler(value)


def _stored_replacement(node: dict[str, Any], function: Any, rewrite: Callable[[Any], Any]) -> Any:
    if any(function is f for f in _LEFT_OUT):
        return rewrite(node["schema"])
    if any(function is f for f in _SEALABLE):
        return {
            "type": "function-wrap",
            "function": {"type": "no-info", "function": _stored_sealable},
            "schema": rewrite(node["schema"]),
        }
    if function is _instant:
        return {
            **node,
            "function": {"type": "no-info", "function": _stored_instant},
            "schema": rewrite(node["schema"]),
        }
    return None


def _without_entry_checks(node: Any) -> Any:
    return rewrite_schema(node, _stored_replacement)


@cache
def stored_validator(model: type[BaseModel]) -> SchemaValidator:
    """``model``'s validator for rows read from Branchline's own event stores (module
    docstring); built once per model."""
    # Not the nested models' prebuilt validators (pydantic-core's default): those keep the
    # checks.
    return SchemaValidator(
        _without_entry_checks(model.__pydantic_core_schema__), _use_prebuilt=False
    )


def stored_envelope(envelope: Mapping[str, Any]) -> RecordedEvent:
    """An envelope read from an event store's ``envelope`` column (decoded JSON)."""
    event: RecordedEvent = stored_validator(RecordedEvent).validate_python(envelope)
    return event


def stored_envelope_json(envelope: bytes | str) -> RecordedEvent:
    """An envelope read from an event store as JSON text."""
    event: RecordedEvent = stored_validator(RecordedEvent).validate_json(envelope)
    return event


def stored_payload(event_type: str, data: Mapping[str, Any]) -> EventPayload:
    """The payload of a stored event of ``event_type`` at its current schema version (raises
    pydantic.ValidationError or UnknownEventType, as ``parse_payload`` does)."""
    payload: EventPayload = stored_validator(payload_model(event_type)).validate_python(
        data, context={STORED: True}
    )
    return payload

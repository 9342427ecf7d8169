"""A model's validation for documents the strict input check passed, without the Python
per-field checks it has already made (#12).

:class:`~branchline_shared.http.strict_input.StrictInput` refuses a body any of whose strings
(keys and values) holds a character :func:`~branchline_shared.events.bounded.bad_text_character`
names or the reserved prefix of sealed values. For such a document three of the per-field
validators of :mod:`branchline_shared.events.bounded`, each a Python call per field (eight for
a submitted event), cannot refuse anything:

* ``clean_text``: it refuses exactly those characters and the prefix;
* ``Sealable`` (``_sealable``) outside stored data: it refuses the prefix, else hands the
  value to the field's own checks unchanged;
* ``clean_token``: besides those, it refuses spaces, tab, line feed and carriage return, and
  non-ASCII control, format and separator characters. It is replaced by a pattern of
  printable ASCII without the space (``[!-~]``), checked in pydantic-core, or kept where the
  field has a pattern of its own that is not known to imply it.

:func:`checked_document_validator` builds the model's core schema with those validators left
out (every other check, Python ones included, stays), so a value it accepts is one the model
accepts and the object it makes is the one the model makes (same class, fields, fields set).
It may refuse more (a non-ASCII identifier): the caller then validates with the model itself,
which accepts or names the error as it always did. Only for documents the strict check passed,
and never for stored data (``Sealable`` takes a sealed value there).

:func:`parse_checked_payload` is :func:`~branchline_shared.events.catalogue.parse_payload` of
submitted data in such a document (the ``data`` of a batch item), by each type's payload model
validated the same way: one validator per type, built from the model's own schema when the type
is first seen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator, core_schema

from branchline_shared.events.bounded import (
    IDENTIFIER_PATTERN,
    OPAQUE_ID_PATTERN,
    _sealable,
    clean_text,
    clean_token,
)
from branchline_shared.events.catalogue import (
    EventPayload,
    UnknownEventType,
    parse_payload,
    payload_model,
)

__all__ = [
    "PRINTABLE_ASCII_ID",
    "checked_document_validator",
    "checked_list_validator",
    "parse_checked_payload",
    "parse_checked_payloads",
    "rewrite_schema",
    "validator_function",
]

PRINTABLE_ASCII_ID = r"^[!-~]*$"
"""Printable ASCII without the space: what ``clean_token`` leaves of ASCII text."""

# Patterns whose every match is printable ASCII without the space (so ``clean_token`` cannot
# refuse a value they matched, but for the prefix, which the strict check refuses).
_ASCII_TOKEN_PATTERNS = frozenset({PRINTABLE_ASCII_ID, IDENTIFIER_PATTERN, OPAQUE_ID_PATTERN})
_WITHOUT_CALL = (clean_text, _sealable)
_TAKEN = frozenset({"cls", "function", "ref", "metadata"})


def validator_function(schema: dict[str, Any]) -> Any:
    """The Python function of a core schema's validator node (after, wrap, before), or None:
    how a schema walk finds the checks it replaces."""
    if schema.get("type") not in ("function-after", "function-wrap", "function-before"):
        return None
    function = schema.get("function")
    return function.get("function") if isinstance(function, dict) else None


def _as_ascii_token(schema: dict[str, Any]) -> dict[str, Any] | None:
    """``schema`` (a ``str`` schema) made to refuse what ``clean_token`` refuses in a checked
    document, or None if it cannot be (then ``clean_token`` stays)."""
    if schema.get("type") != "str":
        return None
    pattern = schema.get("pattern")
    if pattern is None:
        return {**schema, "pattern": PRINTABLE_ASCII_ID}
    return schema if pattern in _ASCII_TOKEN_PATTERNS else None


def rewrite_schema(
    node: Any, replace: Callable[[dict[str, Any], Any, Callable[[Any], Any]], Any]
) -> Any:
    """A core schema rebuilt, each validator node for whose function ``replace(node,
    function, rewrite)`` answers something replaced by that answer (None: the node is kept,
    its parts rewritten; ``rewrite`` rewrites a part). Classes, functions, references and
    metadata are taken as they are; only schemas are rebuilt."""

    def rewrite(part: Any) -> Any:
        if isinstance(part, list):
            return [rewrite(item) for item in part]
        if not isinstance(part, dict):
            return part
        function = validator_function(part)
        if function is not None:
            replaced = replace(part, function, rewrite)
            if replaced is not None:
                return replaced
        return {key: value if key in _TAKEN else rewrite(value) for key, value in part.items()}

    return rewrite(node)


def _checked_replacement(node: dict[str, Any], function: Any, rewrite: Callable[[Any], Any]) -> Any:
    if any(function is f for f in _WITHOUT_CALL):
        return rewrite(node["schema"])
    if function is clean_token:
        inner = rewrite(node["schema"])
        token = _as_ascii_token(inner)
        return token if token is not None else {**node, "schema": inner}
    return None


def _without_checked(node: Any) -> Any:
    return rewrite_schema(node, _checked_replacement)


def checked_document_validator(model: type[BaseModel]) -> SchemaValidator:
    """``model``'s validator for documents the strict input check passed (module docstring):
    it makes ``model`` instances and refuses whatever ``model`` refuses, and perhaps more."""
    # The model's own schema carries its configuration (extra fields forbidden, ...). Not the
    # nested models' prebuilt validators (pydantic-core's default): those keep their checks.
    return SchemaValidator(_without_checked(model.__pydantic_core_schema__), _use_prebuilt=False)


def checked_list_validator(model: type[BaseModel]) -> SchemaValidator:
    """A list of ``model`` validated in one call, for documents the strict input check passed:
    each item exactly as :func:`checked_document_validator` validates it alone (the same
    schema, as the list's items), so the list is accepted if and only if every item is, and its
    items are the objects the one-item validator makes (#12: a batch's 1,000 items in one
    pydantic-core call instead of 1,000). A refusal names the items by index (``loc[0]``)."""
    item = _without_checked(model.__pydantic_core_schema__)
    return SchemaValidator(core_schema.list_schema(item), _use_prebuilt=False)


_CHECKED_PAYLOADS: dict[str, SchemaValidator] = {}


def parse_checked_payload(event_type: str, data: Mapping[str, Any]) -> EventPayload:
    """``parse_payload(event_type, data)`` of submitted (not stored) ``data`` of a document the
    strict input check passed, validated without the checks it made (module docstring; #12):
    the same payload, or the same errors, ``UnknownEventType`` included (an item it refuses is
    parsed by the model itself, which names the errors)."""
    validator = _CHECKED_PAYLOADS.get(event_type)
    if validator is None:
        validator = checked_document_validator(payload_model(event_type))
        _CHECKED_PAYLOADS[event_type] = validator
    try:
        payload: EventPayload = validator.validate_python(data)
    except ValidationError:
        return parse_payload(event_type, data)
    return payload


_CHECKED_PAYLOAD_LISTS: dict[str, SchemaValidator] = {}


def parse_checked_payloads(
    event_type: str, datas: list[Mapping[str, Any]]
) -> list[EventPayload] | None:
    """``[parse_checked_payload(event_type, d) for d in datas]`` in one call (#12: a batch's
    payloads of one type in one pydantic-core call), when ``event_type`` is in the catalogue
    and every one is accepted (the same payloads: each is validated as the one-item validator
    validates it); else None, and each is to be parsed alone, which names its errors."""
    validator = _CHECKED_PAYLOAD_LISTS.get(event_type)
    if validator is None:
        try:
            model = payload_model(event_type)
        except UnknownEventType:
            return None  # not kept: only the catalogue's types are
        validator = checked_list_validator(model)
        _CHECKED_PAYLOAD_LISTS[event_type] = validator
    try:
        payloads: list[EventPayload] = validator.validate_python(datas)
    except ValidationError:
        return None
    return payloads

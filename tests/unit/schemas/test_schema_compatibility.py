"""compare_schemas: every kind of narrowing is breaking, every kind of widening is not.

The old schema is what committed events were validated against; the new one must accept all of
them, or the change is breaking (a new schema version and an upcaster are needed).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from branchline_cli.schema_tooling.compatibility import compare_schemas, resolve_refs
from branchline_shared.events.json_schema import event_schema

pytestmark = pytest.mark.unit

Schema = dict[str, Any]


def payload(**properties: Schema) -> Schema:
    """An object like pydantic's: closed, ``id`` required, the given optional properties."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {"id": {"type": "string", "maxLength": 128}, **properties},
        "required": ["id"],
    }


def optional(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


COLOUR = {"type": "string", "enum": ["red", "green", "blue"]}
BASE = payload(
    colour=COLOUR,
    note=optional({"type": "string", "minLength": 1, "maxLength": 200}),
    score={"type": "integer", "minimum": 0, "maximum": 100},
    tags={"type": "array", "items": {"type": "string"}, "maxItems": 10},
    when={"type": "string", "format": "date-time"},
    amount={"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}]},
    fields={
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 500},
        "propertyNames": {"enum": ["name", "phone"]},
    },
)


def changed(path: list[str | int], value: Any = None, *, delete: bool = False) -> Schema:
    """A copy of BASE with the node at ``path`` replaced (or deleted)."""
    schema = copy.deepcopy(BASE)
    node: Any = schema
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return schema


def breaking_messages(old: Schema, new: Schema) -> list[str]:
    return [str(c) for c in compare_schemas(old, new).breaking]


# --- breaking ---------------------------------------------------------------------------------

BREAKING: dict[str, tuple[Schema, str]] = {
    "property removed": (changed(["properties", "note"], delete=True), "property 'note' removed"),
    "required property removed": (
        {**changed(["properties", "id"], delete=True), "required": []},
        "property 'id' removed",
    ),
    "new required property": (
        {
            **changed(["properties", "branch"], {"type": "string"}),
            "required": ["id", "branch"],
        },
        "new required property 'branch'",
    ),
    "optional property became required": (
        {**BASE, "required": ["id", "note"]},
        "property 'note' became required",
    ),
    "enum value removed": (
        changed(["properties", "colour", "enum"], ["red", "green"]),
        'values removed: "blue"',
    ),
    "string narrowed to a const": (
        changed(["properties", "when"], {"type": "string", "const": "x"}),
        'restricted to the values "x"',
    ),
    "enum added to a free string": (
        changed(["properties", "id", "enum"], ["a", "b"]),
        "restricted to the values",
    ),
    "maxLength lowered": (changed(["properties", "id", "maxLength"], 64), "maxLength tightened"),
    "maxLength added": (
        changed(["properties", "when", "maxLength"], 40),
        "maxLength 40 added",
    ),
    "minLength raised (inside anyOf)": (
        changed(["properties", "note", "anyOf", 0, "minLength"], 5),
        "$.note: minLength tightened 1 → 5",
    ),
    "minimum raised": (changed(["properties", "score", "minimum"], 1), "minimum tightened"),
    "maximum lowered": (changed(["properties", "score", "maximum"], 10), "maximum tightened"),
    "exclusiveMinimum raised": (
        changed(["properties", "amount", "anyOf", 0, "exclusiveMinimum"], 1),
        "exclusiveMinimum tightened",
    ),
    "maxItems lowered": (changed(["properties", "tags", "maxItems"], 5), "maxItems tightened"),
    "minItems added": (changed(["properties", "tags", "minItems"], 1), "minItems 1 added"),
    "format added": (changed(["properties", "id", "format"], "uuid"), "format 'uuid' added"),
    "format changed": (
        changed(["properties", "when", "format"], "date"),
        "format changed 'date-time' → 'date'",
    ),
    "pattern added": (changed(["properties", "id", "pattern"], "^[a-z]+$"), "pattern"),
    "type changed": (
        changed(["properties", "score"], {"type": "string"}),
        "type narrowed: integer → string",
    ),
    "number narrowed to integer": (
        changed(["properties", "amount", "anyOf", 0, "type"], "integer"),
        "no longer accepted",
    ),
    "nullable no longer": (
        changed(["properties", "note"], {"type": "string", "minLength": 1, "maxLength": 200}),
        "type narrowed: null no longer accepted",
    ),
    "one alternative of anyOf dropped": (
        changed(["properties", "amount"], {"type": "number", "exclusiveMinimum": 0}),
        "string no longer accepted",
    ),
    "array items narrowed": (
        changed(["properties", "tags", "items", "maxLength"], 10),
        "$.tags[]: maxLength 10 added",
    ),
    "map values narrowed": (
        changed(["properties", "fields", "additionalProperties", "maxLength"], 100),
        "$.fields{*}: maxLength tightened 500 → 100",
    ),
    "map keys narrowed": (
        changed(["properties", "fields", "propertyNames", "enum"], ["name"]),
        '$.fields{keys}: values removed: "phone"',
    ),
    "uniqueItems added": (changed(["properties", "tags", "uniqueItems"], True), "uniqueItems"),
    "additional properties forbidden": (
        changed(["properties", "fields", "additionalProperties"], False),
        "now rejects every value",
    ),
    "unknown keyword changed": (
        changed(["properties", "tags", "contains"], {"const": "x"}),
        "keyword contains changed",
    ),
}


@pytest.mark.parametrize("kind", list(BREAKING))
def test_breaking_change_is_detected(kind: str) -> None:
    new, expected = BREAKING[kind]
    messages = breaking_messages(BASE, new)
    assert any(expected in m for m in messages), messages


# --- compatible ---------------------------------------------------------------------------------

COMPATIBLE: dict[str, Schema] = {
    "new optional property": changed(["properties", "ticket"], optional({"type": "string"})),
    "enum widened": changed(["properties", "colour", "enum"], ["red", "green", "blue", "pink"]),
    "maxLength raised": changed(["properties", "id", "maxLength"], 256),
    "maxLength removed": changed(["properties", "id", "maxLength"], delete=True),
    "minLength lowered": changed(["properties", "note", "anyOf", 0, "minLength"], 0),
    "minimum lowered": changed(["properties", "score", "minimum"], -5),
    "maximum raised": changed(["properties", "score", "maximum"], 1000),
    "maxItems raised": changed(["properties", "tags", "maxItems"], 50),
    "format removed": changed(["properties", "when", "format"], delete=True),
    "integer widened to number": changed(["properties", "score", "type"], "number"),
    "made nullable": changed(["properties", "score"], optional(BASE["properties"]["score"])),
    "required property made optional": {**BASE, "required": []},
    "description changed": changed(["properties", "id", "description"], "The id."),
    "title and default changed": changed(["properties", "note", "default"], "none"),
    "extension annotation changed": {**BASE, "x-personal-paths": ["note"]},
    "map keys widened": changed(
        ["properties", "fields", "propertyNames", "enum"], ["name", "phone", "email"]
    ),
    "additional properties allowed": {**BASE, "additionalProperties": True},
    "value set lifted": changed(["properties", "colour"], {"type": "string"}),
}


@pytest.mark.parametrize("kind", list(COMPATIBLE))
def test_compatible_change_is_allowed(kind: str) -> None:
    diff = compare_schemas(BASE, COMPATIBLE[kind])
    assert not diff.is_breaking, [str(c) for c in diff.breaking]
    assert diff.compatible, "the change is reported, as compatible"


def test_identical_schemas_have_no_changes() -> None:
    assert compare_schemas(BASE, copy.deepcopy(BASE)).changes == ()


def test_refs_are_resolved_before_comparing() -> None:
    inline = payload(colour=COLOUR)
    by_ref = {
        **payload(colour={"$ref": "#/$defs/Colour", "description": "which"}),
        "$defs": {"Colour": COLOUR},
    }
    assert not compare_schemas(inline, by_ref).is_breaking
    narrowed = copy.deepcopy(by_ref)
    narrowed["$defs"]["Colour"]["enum"] = ["red"]
    assert any("values removed" in str(c) for c in compare_schemas(inline, narrowed).breaking)
    assert any("values removed" in str(c) for c in compare_schemas(by_ref, narrowed).breaking)


def test_resolve_refs_inlines_and_keeps_siblings_and_survives_recursion() -> None:
    tree = {
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
        "title": "root",
    }
    resolved = resolve_refs(tree)
    assert "$defs" not in resolved
    assert resolved["title"] == "root"
    assert resolved["type"] == "object"
    assert resolved["properties"]["child"] == {"$ref": "#/$defs/Node"}  # recursion stops


def test_a_real_model_schema_narrowed_in_a_nested_definition_is_breaking() -> None:
    old = event_schema("rule.violation_refused")
    new = copy.deepcopy(old)
    new["$defs"]["Actor"]["properties"]["role"]["maxLength"] = 10
    messages = breaking_messages(old, new)
    assert any(m.startswith("$.refused_event.actor.role:") for m in messages), messages
    assert any(m.startswith("$.submitted_by.role:") for m in messages), messages


def test_a_real_model_enum_widened_is_compatible() -> None:
    old = event_schema("product.recommended")
    new = copy.deepcopy(old)
    new["$defs"]["ProductRisk"]["enum"].append("R6")
    diff = compare_schemas(old, new)
    assert not diff.is_breaking
    assert any('values added: "R6"' in str(c) for c in diff.compatible)

"""Schema compatibility (ADR-0004): does a new schema still accept every document the old one
accepted?

A change that narrows (a property removed, a type or value set narrowed, a limit tightened, a
format or pattern added, a new required property) is *breaking*: stored events written under
the old schema may no longer read. A breaking change needs a new ``SCHEMA_VERSION`` (a new file
next to the old one) and an upcaster from the old version
(:mod:`branchline_shared.events.upcasting`); :mod:`.check` enforces both.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# --- $ref resolution --------------------------------------------------------------------------


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    node: Any = root
    for raw in ref.removeprefix("#/").split("/") if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def resolve_refs(schema: Any) -> Any:
    """``schema`` with every local ``$ref`` (``#/...``) replaced by what it points at (sibling
    keywords merged in) and ``$defs`` dropped. A recursive reference stays a ``$ref``."""
    if not isinstance(schema, dict):
        return schema
    root = schema

    def walk(node: Any, active: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, active) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and ref not in active:
            target = walk(_pointer(root, ref), (*active, ref))
            siblings = {k: walk(v, active) for k, v in node.items() if k not in ("$ref", "$defs")}
            if isinstance(target, dict):
                return {**target, **siblings}
            return target if not siblings else {"allOf": [target, siblings]}
        return {k: walk(v, active) for k, v in node.items() if k != "$defs"}

    return walk(copy.deepcopy(schema), ())


# --- compatibility ----------------------------------------------------------------------------

ChangeKind = Literal["breaking", "compatible"]


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    path: str
    """Where in the document: ``$`` the root, ``$.refused_event.actor.id``, ``$.purposes[]``."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class SchemaDiff:
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind == "breaking")

    @property
    def compatible(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind == "compatible")

    @property
    def is_breaking(self) -> bool:
        return bool(self.breaking)


_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
        "$id",
        "$schema",
        "$anchor",
    }
)
_UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_ADDED_NARROWS = ("pattern", "format", "multipleOf", "contentEncoding", "contentMediaType")
_COMBINATORS = ("anyOf", "oneOf")
_HANDLED = frozenset(
    {
        "type",
        "enum",
        "const",
        *_UPPER_BOUNDS,
        *_LOWER_BOUNDS,
        *_ADDED_NARROWS,
        "uniqueItems",
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "patternProperties",
        "items",
        "prefixItems",
        *_COMBINATORS,
        "allOf",
    }
)


def _is_annotation(keyword: str) -> bool:
    return keyword in _ANNOTATIONS or keyword.startswith("x-")


def _accepts_anything(schema: Any) -> bool:
    if schema is True:
        return True
    return isinstance(schema, dict) and all(_is_annotation(k) for k in schema)


def compare_schemas(old: Mapping[str, Any] | bool, new: Mapping[str, Any] | bool) -> SchemaDiff:
    """How ``new`` differs from ``old``, each difference ``breaking`` (some document valid under
    ``old`` may be invalid under ``new``) or ``compatible`` (widened, or only annotations).

    Local ``$ref``s are resolved first. Where a proof of inclusion would need more than the
    keywords pydantic emits (a changed pattern, an unknown keyword changed), the change counts
    as breaking: when in doubt, a new version."""
    out: list[Change] = []
    _compare(resolve_refs(old), resolve_refs(new), "$", out)
    return SchemaDiff(tuple(out))


def _compare(old: Any, new: Any, path: str, out: list[Change]) -> None:
    if old == new:
        return
    if old is False:
        out.append(Change("compatible", path, "was rejecting everything, now accepts values"))
        return
    if new is False:
        out.append(Change("breaking", path, "now rejects every value"))
        return
    old_s: dict[str, Any] = {} if old is True else dict(old)
    new_s: dict[str, Any] = {} if new is True else dict(new)
    _compare_annotations(old_s, new_s, path, out)
    if _accepts_anything(new_s):
        if not _accepts_anything(old_s):
            out.append(Change("compatible", path, "every constraint lifted"))
        return
    old_branches = _branches(old_s)
    new_branches = _branches(new_s)
    if len(old_branches) == 1 and len(new_branches) == 1:
        _compare_branch(old_branches[0], new_branches[0], path, out)
        return
    matched_new: set[int] = set()
    for old_branch in old_branches:
        old_type = _type_of(old_branch)
        candidates = [
            (i, b) for i, b in enumerate(new_branches) if _type_covers(_type_of(b), old_type)
        ]
        if not candidates:
            out.append(
                Change("breaking", path, f"type narrowed: {old_type or 'any'} no longer accepted")
            )
            continue
        best: list[Change] | None = None
        best_index = -1
        for index, candidate in candidates:
            trial: list[Change] = []
            _compare_branch(old_branch, candidate, path, trial)
            score = sum(c.kind == "breaking" for c in trial)
            if best is None or score < sum(c.kind == "breaking" for c in best):
                best, best_index = trial, index
        assert best is not None
        matched_new.add(best_index)
        out.extend(best)
    old_types = {_type_of(b) for b in old_branches}
    for index, new_branch in enumerate(new_branches):
        if index not in matched_new and _type_of(new_branch) not in old_types:
            out.append(Change("compatible", path, f"type widened: now also {_type_of(new_branch)}"))


def _compare_annotations(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    for keyword in sorted({k for k in (*old, *new) if _is_annotation(k)}):
        if old.get(keyword) != new.get(keyword):
            out.append(Change("compatible", path, f"annotation {keyword} changed"))


def _branches(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a schema accepts (anyOf/oneOf and type lists flattened), annotations
    of the outer schema left out (compared on their own)."""
    rest = {k: v for k, v in schema.items() if not _is_annotation(k)}
    for combinator in ("allOf",):
        if combinator in rest:
            merged: dict[str, Any] = {}
            for part in [rest.pop(combinator), rest]:
                for sub in part if isinstance(part, list) else [part]:
                    merged = _merge(merged, sub if isinstance(sub, dict) else {})
            rest = merged
    for combinator in _COMBINATORS:
        if combinator in rest:
            alternatives = rest.pop(combinator)
            flattened: list[dict[str, Any]] = []
            for alternative in alternatives:
                base = {**rest, **(alternative if isinstance(alternative, dict) else {})}
                flattened.extend(_branches(base))
            return flattened
    types = rest.get("type")
    if isinstance(types, list):
        return [{**rest, "type": t} for t in types]
    return [rest]


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for key, value in b.items():
        if key == "properties" and key in merged:
            merged[key] = {**merged[key], **value}
        elif key == "required" and key in merged:
            merged[key] = sorted({*merged[key], *value})
        else:
            merged[key] = value
    return merged


def _type_of(schema: Mapping[str, Any]) -> str | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    values = _value_set(schema)
    if values:
        kinds = {_json_type(v) for v in values}
        if len(kinds) == 1:
            return kinds.pop()
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_covers(new_type: str | None, old_type: str | None) -> bool:
    if new_type is None:
        return True
    if old_type is None:
        return False
    return new_type == old_type or (new_type == "number" and old_type == "integer")


def _value_set(schema: Mapping[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return list(schema["enum"])
    return None


def _show(values: Iterable[Any]) -> str:
    return ", ".join(json.dumps(v, ensure_ascii=False) for v in values)


def _compare_branch(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    old_type, new_type = _type_of(old), _type_of(new)
    if old_type != new_type:
        if _type_covers(new_type, old_type):
            out.append(Change("compatible", path, f"type widened: {old_type} → {new_type}"))
        else:
            out.append(Change("breaking", path, f"type narrowed: {old_type or 'any'} → {new_type}"))
            return
    _compare_values(old, new, path, out)
    _compare_bounds(old, new, path, out)
    for keyword in _ADDED_NARROWS:
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if after is None:
            out.append(Change("compatible", path, f"{keyword} {before!r} removed"))
        elif keyword == "multipleOf" and before is not None and before % after == 0:
            out.append(Change("compatible", path, f"multipleOf relaxed {before} → {after}"))
        elif before is None:
            out.append(Change("breaking", path, f"{keyword} {after!r} added"))
        else:
            out.append(Change("breaking", path, f"{keyword} changed {before!r} → {after!r}"))
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        out.append(Change("breaking", path, "uniqueItems added"))
    elif old.get("uniqueItems") and not new.get("uniqueItems"):
        out.append(Change("compatible", path, "uniqueItems removed"))
    _compare_object(old, new, path, out)
    _compare_array(old, new, path, out)
    for keyword in sorted({*old, *new} - _HANDLED):
        if not _is_annotation(keyword) and old.get(keyword) != new.get(keyword):
            out.append(
                Change("breaking", path, f"keyword {keyword} changed (cannot prove it is wider)")
            )


def _compare_values(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    before, after = _value_set(old), _value_set(new)
    if after is None:
        if before is not None:
            out.append(Change("compatible", path, "value set lifted"))
        return
    if before is None:
        out.append(Change("breaking", path, f"restricted to the values {_show(after)}"))
        return
    removed = [v for v in before if v not in after]
    added = [v for v in after if v not in before]
    if removed:
        out.append(Change("breaking", path, f"values removed: {_show(removed)}"))
    if added:
        out.append(Change("compatible", path, f"values added: {_show(added)}"))


def _compare_bounds(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    for keyword in (*_UPPER_BOUNDS, *_LOWER_BOUNDS):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if after is None:
            out.append(Change("compatible", path, f"{keyword} {before} removed"))
        elif before is None:
            out.append(Change("breaking", path, f"{keyword} {after} added"))
        elif (after < before) if keyword in _UPPER_BOUNDS else (after > before):
            out.append(Change("breaking", path, f"{keyword} tightened {before} → {after}"))
        else:
            out.append(Change("compatible", path, f"{keyword} relaxed {before} → {after}"))


def _compare_object(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    old_props: Mapping[str, Any] = old.get("properties", {})
    new_props: Mapping[str, Any] = new.get("properties", {})
    old_required = set(old.get("required", ()))
    new_required = set(new.get("required", ()))
    for name in old_props:
        if name not in new_props:
            out.append(Change("breaking", path, f"property {name!r} removed"))
        else:
            _compare(old_props[name], new_props[name], f"{path}.{name}", out)
    for name in new_props:
        if name in old_props:
            continue
        if name in new_required:
            out.append(Change("breaking", path, f"new required property {name!r}"))
        else:
            out.append(Change("compatible", path, f"new optional property {name!r}"))
    for name in sorted(new_required - old_required):
        if name in old_props or name not in new_props:
            out.append(Change("breaking", path, f"property {name!r} became required"))
    for name in sorted(old_required - new_required):
        out.append(Change("compatible", path, f"property {name!r} no longer required"))
    if "additionalProperties" in old or "additionalProperties" in new:
        _compare(
            old.get("additionalProperties", True),
            new.get("additionalProperties", True),
            f"{path}{{*}}",
            out,
        )
    if "propertyNames" in old or "propertyNames" in new:
        _compare(
            old.get("propertyNames", True), new.get("propertyNames", True), f"{path}{{keys}}", out
        )
    old_patterns: Mapping[str, Any] = old.get("patternProperties", {})
    new_patterns: Mapping[str, Any] = new.get("patternProperties", {})
    for pattern in sorted({*old_patterns, *new_patterns}):
        if pattern in old_patterns and pattern in new_patterns:
            _compare(old_patterns[pattern], new_patterns[pattern], f"{path}{{{pattern}}}", out)
        else:
            change = "removed" if pattern in old_patterns else "added"
            out.append(Change("breaking", path, f"patternProperties {pattern!r} {change}"))


def _compare_array(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    if "items" in old or "items" in new:
        _compare(old.get("items", True), new.get("items", True), f"{path}[]", out)
    old_prefix: Sequence[Any] = old.get("prefixItems", ())
    new_prefix: Sequence[Any] = new.get("prefixItems", ())
    for index in range(max(len(old_prefix), len(new_prefix))):
        before = old_prefix[index] if index < len(old_prefix) else old.get("items", True)
        after = new_prefix[index] if index < len(new_prefix) else new.get("items", True)
        _compare(before, after, f"{path}[{index}]", out)

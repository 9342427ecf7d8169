"""Submitted payloads of a document the strict input check passed are validated without the
checks it made (#12, ``parse_checked_payload``): for every event type, good and bad data, the
answer is ``parse_payload``'s, the same payload (class, fields, fields set, JSON) or the same
errors; and the catalogue's examples take the checked validator, not the fallback."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from tests.support.examples import EXAMPLE_PAYLOADS

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events import checked_documents
from branchline_shared.events.catalogue import PAYLOAD_MODELS, UnknownEventType, parse_payload
from branchline_shared.events.checked_documents import parse_checked_payload
from branchline_shared.http.strict_input import body_errors

pytestmark = pytest.mark.unit

_TYPES = sorted(PAYLOAD_MODELS)

# Values that hit what the checked validator leaves out or replaces: spaces, tab, line feed,
# non-ASCII letters, format and separator characters (clean_token), controls and the reserved
# prefix (refused by the strict check, so skipped), and plain values of other types.
_TEXT = st.one_of(
    st.sampled_from(["C-1", "rm-1", " x ", "a.b:c@d", "x" * 129, "", "individual", "P-1"]),
    st.text(alphabet="aZ09-._:@ \t\né中\u200b\u00a0\u2028\u202e\x00\x7f", max_size=12),
    st.just(SEALED_PREFIX + "abc"),
    st.text(max_size=6),
)
_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.sampled_from(["2026-12-03T10:00:00+08:00", "2026-12-03", "1.5", "-3"])
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=5,
)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        found = [(*at, key) for key in node]
        return found + [p for key, value in node.items() for p in _paths(value, (*at, key))]
    if isinstance(node, list):
        found = [(*at, i) for i in range(len(node))]
        return found + [p for i, value in enumerate(node) for p in _paths(value, (*at, i))]
    return []


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """An event type and its example's data with a few values replaced, removed or added."""
    event_type = draw(st.sampled_from(_TYPES))
    data = copy.deepcopy(EXAMPLE_PAYLOADS.get(event_type, {}))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(data)
        if paths and draw(st.booleans()):
            *parent_path, last = draw(st.sampled_from(paths))
            parent: Any = data
            for step in parent_path:
                parent = parent[step]
            if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
                del parent[last]
            else:
                parent[last] = draw(_VALUE)
        else:
            data[draw(_TEXT)] = draw(_VALUE)
    return event_type, data


def _fields_set(model: BaseModel) -> list[Any]:
    nested = [getattr(model, name) for name in sorted(model.model_fields_set)]
    return [model.model_fields_set] + [
        _fields_set(value) for value in nested if isinstance(value, BaseModel)
    ]


def _answer(parse: Any, event_type: str, data: dict[str, Any]) -> Any:
    try:
        return parse(event_type, data)
    except ValidationError as exc:
        return exc.errors(include_url=False, include_context=False)  # ctx: exception objects


@settings(max_examples=600, deadline=None)
@given(payloads())
def test_the_checked_parse_answers_as_the_catalogue(drawn: tuple[str, dict[str, Any]]) -> None:
    event_type, data = drawn
    if body_errors({"events": [{"data": data}]}):
        return  # refused by the strict input check: never validated
    expected = _answer(parse_payload, event_type, data)
    answered = _answer(parse_checked_payload, event_type, data)
    assert type(answered) is type(expected)
    assert answered == expected
    if isinstance(expected, BaseModel):
        assert _fields_set(answered) == _fields_set(expected)
        assert answered.model_dump_json() == expected.model_dump_json()


@pytest.mark.parametrize("event_type", sorted(EXAMPLE_PAYLOADS))
def test_the_examples_take_the_checked_validator(
    event_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fallback(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validated by the model itself")

    example = EXAMPLE_PAYLOADS[event_type]
    expected = parse_payload(event_type, example)
    monkeypatch.setattr(checked_documents, "parse_payload", fallback)
    made = parse_checked_payload(event_type, example)
    assert made == expected
    assert made.model_dump_json() == expected.model_dump_json()


def test_refused_data_is_named_by_the_model() -> None:
    data = {"client_type": "individual", "rm_id": "rm 1"}  # a space: not an identifier
    with pytest.raises(ValidationError) as checked:
        parse_checked_payload("client.registered", data)
    with pytest.raises(ValidationError) as model:
        parse_payload("client.registered", data)
    assert checked.value.errors(include_url=False) == model.value.errors(include_url=False)


def test_an_unknown_type_is_unknown() -> None:
    with pytest.raises(UnknownEventType):
        parse_checked_payload("no.such_type", {})

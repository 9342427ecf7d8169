"""The strict input check's parse by orjson (#12): ``clean_document`` may only ever return a
document where the full way (``parse_strict_json``, then ``plainly_clean`` or
``body_errors``) accepts the body and parses the very same document, types and key order
included; every other body is left to the full way, which refuses or names the field."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_shared.http.strict_input import (
    MAX_DEPTH,
    PARSED_BODY,
    UNDECIDED,
    body_errors,
    clean_document,
    parse_strict_json,
    plainly_clean,
    strict_request,
)

pytestmark = pytest.mark.unit

_KEYS = st.sampled_from(["a", "b", "type", "data", "x y", "[", "}", ":", ",", ""])
_NUMBERS = st.one_of(
    st.integers(-(2**63), 2**63),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-(10**6), max_value=10**6).map(lambda f: round(f, 3)),
)
_TEXT = st.one_of(
    st.text(max_size=8), st.text(alphabet='ab "\\[]{}:,\x00\t\n\x7fé\ud800', max_size=8)
)


def _documents() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(st.none(), st.booleans(), _NUMBERS, _TEXT),
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.lists(st.tuples(_KEYS, children), max_size=4)
        ),
        max_leaves=25,
    )


def _text(node: Any, spaced: bool) -> str:
    """JSON text; a list of pairs is an object, written with every key (duplicates too)."""
    gap = " " if spaced else ""
    if isinstance(node, list) and node and all(isinstance(p, tuple) for p in node):
        inner = f",{gap}".join(f"{json.dumps(k)}:{gap}{_text(v, spaced)}" for k, v in node)
        return "{" + inner + "}"
    if isinstance(node, list):
        return "[" + f",{gap}".join(_text(v, spaced) for v in node) + "]"
    return json.dumps(node, ensure_ascii=False)


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (``1 == 1.0`` is not enough), keys in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a.hex() == b.hex()
    return bool(a == b)


def _full_way(body: bytes) -> Any:
    """What the full check leaves parsed for a clean body, or UNDECIDED for any other."""
    try:
        document = parse_strict_json(body)
    except ValueError:  # refused (a duplicate key, a number out of range, too deep), not JSON
        return UNDECIDED
    if not plainly_clean(body) and body_errors(document):
        return UNDECIDED
    return document


@settings(max_examples=600, deadline=None)
@given(_documents(), st.booleans())
def test_a_document_orjson_returns_is_the_full_ways_own(document: Any, spaced: bool) -> None:
    body = _text(document, spaced).encode("utf-8", "surrogatepass")
    quick = clean_document(body)
    if quick is UNDECIDED:
        return
    full = _full_way(body)
    assert full is not UNDECIDED, body
    assert _same(quick, full), body


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',  # a duplicate key
        b'{"a": {"b": 1, "b": 1}}',
        b'{"a": 1e5}',  # an exponent
        b'{"a": 9007199254740992}',  # beyond the safe range
        b'{"a": 1234567890123456}',  # 16 digits, in range: the full way reads it
        b'{"a": 0.1234567890123456}',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1',  # malformed
        b'{"a": 1} x',  # extra data
        b'{"a": "\\u0000"}',  # an escape
        b'{"a": "\xc3\xa9"}',  # not ASCII
        b'{"a": "bl:pii:v1:x"}',  # the reserved prefix
        b"\xef\xbb\xbf{}",  # a byte order mark
        json.dumps(json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))).encode(),
    ],
)
def test_what_the_full_way_must_decide_is_left_to_it(body: bytes) -> None:
    assert clean_document(body) is UNDECIDED


def test_an_ordinary_event_is_parsed_by_orjson() -> None:
    body = json.dumps(
        {
            "type": "client.registered",
            "occurred_at": "2026-12-03T10:00:00+08:00",
            "client_id": "C-1",
            "amount": -12345.25,
            "count": 900719925474099,
            "actor": {"id": "s-1", "role": "teller"},
            "data": {"client_type": "individual", "tags": ["a", "b"], "flag": None},
        }
    ).encode()
    quick = clean_document(body)
    assert quick is not UNDECIDED
    assert _same(quick, parse_strict_json(body))


def test_many_brackets_but_shallow_is_parsed_by_orjson_too_deep_is_not() -> None:
    shallow = json.dumps({"events": [{"data": {"tags": ["a"]}}] * 40}).encode()
    assert clean_document(shallow) is not UNDECIDED
    deep = json.dumps([[{"a": 1}]] * 40 + [json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)])
    assert clean_document(deep.encode()) is UNDECIDED


def _checked(body: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    errors, _ = asyncio.run(strict_request(scope, receive))
    return errors, scope


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        (b'{"data": {"a": 1, "a": 2}}', "a", "duplicate_key"),
        (b'{"data": {"n": 9007199254740992}}', "data.n", "number_out_of_range"),
        (b'{"data": {"n": 1e300}}', "data.n", "number_out_of_range"),
        (b'{"data": {"n": NaN}}', "body", "not_a_number"),
        (b'{"data": {"s": "a\\u0001"}}', "data.s", "control_character"),
        (b'{"data": {"s": "bl:pii:v1:x"}}', "data.s", "reserved_prefix"),
    ],
)
def test_refusals_still_name_the_field(body: bytes, field: str, kind: str) -> None:
    errors, scope = _checked(body)
    assert [(e["field"], e["type"]) for e in errors] == [(field, kind)]
    assert PARSED_BODY not in scope


def test_malformed_json_is_left_to_the_route_unparsed() -> None:
    errors, scope = _checked(b'{"type": ')
    assert errors == []
    assert PARSED_BODY not in scope


def test_a_clean_body_is_left_parsed() -> None:
    errors, scope = _checked(b'{"type": "client.registered", "data": {"n": 1.5}}')
    assert errors == []
    assert _same(scope[PARSED_BODY], {"type": "client.registered", "data": {"n": 1.5}})

"""The strict input check's fast path (#12): ``plainly_clean`` judges a body from its bytes and
may only ever say "clean" where the full walk (``body_errors``) finds nothing."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.http.strict_input import (
    MAX_DEPTH,
    body_errors,
    parse_strict_json,
    plainly_clean,
)

# Text that hits every case: controls, DEL, C1, surrogates, quotes, backslashes, brackets,
# non-ASCII and the reserved prefix.
_TEXT = st.one_of(
    st.text(max_size=12),
    st.text(alphabet='ab "\\[]{}\x00\x01\x08\x0c\t\n\x7f\x85é\ud800', max_size=12),
    st.just(SEALED_PREFIX + "x"),
    st.just("a" + SEALED_PREFIX),
)
_DOCUMENTS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), _TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_TEXT, children, max_size=4)
    ),
    max_leaves=30,
)


def nested(depth: int, leaf: Any = "x") -> Any:
    document = leaf
    for level in range(depth):
        document = [document] if level % 2 else {"k": document}
    return document


@settings(max_examples=400, deadline=None)
@given(_DOCUMENTS, st.booleans())
def test_a_body_judged_clean_has_no_errors(document: Any, ascii_only: bool) -> None:
    body = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        parsed = parse_strict_json(body)
    except ValueError:
        return  # not valid UTF-8 JSON: the middleware never asks
    if plainly_clean(body):
        assert body_errors(parsed) == []


def test_an_ordinary_batch_takes_the_fast_path() -> None:
    event = {
        "type": "client.registered",
        "occurred_at": "2026-12-03T10:00:00+08:00",
        "client_id": "C-1",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-1", "tags": ["a", "b"]},
    }
    assert plainly_clean(json.dumps({"events": [event] * 1000}).encode())


def test_escapes_non_ascii_and_the_reserved_prefix_go_to_the_walk() -> None:
    for body in (
        b'{"a": "x\\u0000"}',  # an escaped NUL
        b'{"a": "x\\b"}',  # an escaped backspace
        b'{"a": "\\u0062l:pii:v1:x"}',  # the prefix spelled with an escape
        '{"a": "é"}'.encode(),
        b'{"a": "' + SEALED_PREFIX.encode() + b'x"}',
        b'{"a\\"b": 1}',  # a quote inside a key
    ):
        assert not plainly_clean(body), body


def test_depth_is_bounded_like_the_walk() -> None:
    at_limit = json.dumps(nested(MAX_DEPTH)).encode()
    assert plainly_clean(at_limit)
    assert body_errors(parse_strict_json(at_limit)) == []
    too_deep = json.dumps(nested(MAX_DEPTH + 1)).encode()
    assert not plainly_clean(too_deep)
    assert body_errors(parse_strict_json(too_deep))
    # Brackets inside strings are text, not nesting.
    assert plainly_clean(json.dumps({"a": "[" * 100, "b": "}" * 100}).encode())

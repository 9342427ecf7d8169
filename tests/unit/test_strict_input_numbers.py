"""Numbers in request bodies are bounded where they enter (docs/input-validation.md) by the
range the audit ledger can record verifiably (docs/audit.md, numbers): so no event intake
accepts, nor the record of a refused one (which keeps the submitted data as sent), is ever
refused by the ledger's consumer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    ChainEntry,
    chain_hash,
    entry_canonical_bytes,
    verify_chain,
)
from branchline_shared.http.strict_input import parse_strict_json

pytestmark = pytest.mark.unit

SAFE = 2**53 - 1
AT = "2026-12-03T10:00:00.000000Z"


def _refusal(body: str) -> dict[str, Any]:
    try:
        parse_strict_json(body.encode())
    except ValueError as refused:
        error: dict[str, Any] = getattr(refused, "error", {})
        return error
    raise AssertionError(f"not refused: {body[:60]}")


@pytest.mark.parametrize(
    "number",
    [
        "9007199254740992",
        "-9007199254740992",
        "10000000000000000",
        "1" + "0" * 39,
        "1" + "0" * 60,
        "1e16",
        "-1e16",
        "9007199254740992.0",
        "1.5e300",
        "1e999",
        "-1e999",
    ],
)
def test_a_number_beyond_the_safe_range_is_refused_without_echoing_it(number: str) -> None:
    error = _refusal('{"type": "x", "data": {"note": [1, 2.5], "amount": ' + number + "}}")
    assert error["type"] == "number_out_of_range"
    assert error["field"] == "data.amount"
    assert number not in error["message"]
    assert "2^53 - 1" in error["message"]


def test_the_first_number_out_of_range_is_named() -> None:
    body = '{"a": [1, {"b": 1e20}], "c": {"d": 9007199254740992}, "e": 1e16}'
    assert _refusal(body)["field"] == "a.1.b"
    assert _refusal('{"a": 1' + "0" * 5000 + "}")["field"] == "body"  # too long to convert
    assert _refusal("[1e400]")["field"] == "0"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_constants_are_not_numbers(constant: str) -> None:
    assert _refusal('{"a": ' + constant + "}")["type"] == "not_a_number"


def test_the_safe_range_is_accepted_to_its_ends() -> None:
    body = '{"a": [9007199254740991, -9007199254740991, 9007199254740991.0, 1e15, 0.1, 1e-300]}'
    assert parse_strict_json(body.encode()) == {"a": [SAFE, -SAFE, float(SAFE), 1e15, 0.1, 1e-300]}


_number_texts = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=False).map(repr).map(lambda t: t.replace("inf", "1e999")),
    st.floats(min_value=2.0**50, max_value=2.0**56).map(repr),
    st.sampled_from(["1e16", "9007199254740991.0", "9007199254740993", "-0.0", "5e-324"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_number_texts, min_size=1, max_size=4))
def test_every_number_a_body_may_hold_is_recorded_verifiably(texts: list[str]) -> None:
    """Whatever numbers strict input lets through, the ledger appends an event holding them
    as sent and the entry verifies (and what it refuses, the ledger would refuse too)."""
    body = '{"type": "x.y", "data": {"values": [' + ", ".join(texts) + "]}}"
    try:
        event = parse_strict_json(body.encode())
    except ValueError:
        assert any(abs(float(t)) > SAFE for t in texts)
        return
    canonical = entry_canonical_bytes(1, event, AT)
    column = json.loads(canonical)["event"]
    digest = chain_hash(GENESIS_PREV_HASH, canonical)
    entry = ChainEntry(1, column, AT, GENESIS_PREV_HASH, digest, canonical=canonical)
    assert verify_chain([entry]).ok

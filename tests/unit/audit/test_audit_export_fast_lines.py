"""An export's entry lines put together from their parts (#12) are the bytes the format defines.

``ExportWriter.entry_line`` builds the entry object's RFC 8785 form from fixed pieces and
sends the event through the C ``json`` encoder when that is equivalent (``jcs_text``);
``reference_entry_line`` puts the whole entry object through the canonicaliser, as the format
(ADR-0006, ``domain/export.py``) is written. Any divergence, one byte of a line or of the
running ``line_digest``, fails here; so does an error one raises and the other does not.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_audit.domain.export import ExportWriter, jcs, jcs_text

pytestmark = pytest.mark.unit

# Strings that reach every branch: ASCII, controls (escaped), quotes and backslashes,
# non-ASCII in and above the BMP (keys sorted by UTF-16 units), lone surrogates (refused).
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(max_codepoint=0x7F),
        st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF),
        st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\ud800", "\udfff", "\ue000", "😀"]),
    ),
    max_size=12,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**54), max_value=2**54),
    st.sampled_from([2**53 - 1, -(2**53) + 1, 2**53, -(2**53)]),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(TEXT, children, max_size=4),
    ),
    max_leaves=20,
)
EVENTS = st.dictionaries(TEXT, JSON, max_size=6)
HASHES = st.binary(min_size=32, max_size=32)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except (ValueError, TypeError, RecursionError) as error:
        # rfc8785's refusals are ValueErrors; the class is part of the contract.
        return "error", type(error)


@given(JSON)
@settings(max_examples=400)
def test_jcs_text_is_the_canonicaliser_s_output(value: Any) -> None:
    assert outcome(lambda: jcs_text(value)) == outcome(lambda: jcs(value).decode("utf-8"))


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, None, 'x\n\t"\\\x01\x7f'], "é": "ü"},
        {"\ue000": 1, "😀": 2},  # UTF-16 order differs from code-point order
        {"n": 1.0, "m": 1e21, "k": -0.0},
        {"big": 2**53},
        {"s": "\ud800"},
        {1: "non-string key"},
        ("a", "tuple"),
    ],
)
def test_jcs_text_edge_cases(value: Any) -> None:
    assert outcome(lambda: jcs_text(value)) == outcome(lambda: rfc8785.dumps(value).decode())


ENTRIES = st.lists(
    st.tuples(
        st.one_of(st.integers(min_value=1, max_value=10**6), st.sampled_from([2**53 - 1])),
        st.one_of(st.just("2026-11-22T09:00:00.000000Z"), TEXT),
        HASHES,
        HASHES,
        EVENTS,
        st.one_of(st.sampled_from(["full", "masked", "pruned"]), TEXT),
        st.one_of(st.none(), st.lists(HASHES, max_size=20)),
    ),
    min_size=1,
    max_size=5,
)


@given(st.sampled_from(["jsonl", "csv"]), ENTRIES)
@settings(max_examples=300)
def test_entry_lines_are_the_reference_lines(content: str, entries: list[Any]) -> None:
    fast, reference = ExportWriter(content), ExportWriter(content)  # type: ignore[arg-type]
    for position, appended_at, prev_hash, hash, event, view, proof in entries:
        fields = {
            "position": position,
            "appended_at": appended_at,
            "prev_hash": prev_hash,
            "hash": hash,
            "event": event,
            "view": view,
            "proof": proof,
        }
        got = outcome(lambda f=fields: fast.entry_line(**f))  # type: ignore[misc]
        want = outcome(lambda f=fields: reference.reference_entry_line(**f))  # type: ignore[misc]
        assert got == want
        if got[0] == "error":
            return
        assert fast.lines_digest == reference.lines_digest
        assert (fast.count, fast.first_position, fast.last_position) == (
            reference.count,
            reference.first_position,
            reference.last_position,
        )


def test_a_benchmark_shaped_entry_with_a_proof() -> None:
    event = {
        "event_id": "4743684e-2e18-455d-96da-b8c13a24cb95",
        "type": "visit.needs_confirmed",
        "schema_version": 1,
        "occurred_at": "2026-11-22T09:00:00Z",
        "actor": {"id": "staff-2", "role": "teller"},
        "client_id": "C-18",
        "correlation_id": None,
        "data": {"visit_id": "V-0", "note": "n0"},
    }
    proof = [hashlib.sha256(bytes([i])).digest() for i in range(17)]
    for content in ("jsonl", "csv"):
        fast, reference = ExportWriter(content), ExportWriter(content)  # type: ignore[arg-type]
        for position in (1, 2, 3):
            fields: dict[str, Any] = {
                "position": position,
                "appended_at": "2026-11-22T09:00:00.000000Z",
                "prev_hash": proof[0],
                "hash": proof[1],
                "event": event,
                "view": "full",
                "proof": proof[:position] if position < 3 else None,
            }
            assert fast.entry_line(**fields) == reference.reference_entry_line(**fields)

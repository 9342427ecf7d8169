"""``verify-export``'s check of a line through ``jcs_text`` (#12, Round 18) is the format's:
the entry object in its exact RFC 8785 form, and the bytes its ``line_digest`` is over.

``_read_entry`` encodes a jsonl line's members around ``line_digest`` once, through the C
encoder where that is RFC 8785's bytes; ``_reference_entry`` puts the entry through
``rfc8785`` as the format (ADR-0006, ``domain/export.py``) is written. Any divergence, an
entry, the digested bytes, a refusal one makes and the other does not, or a verdict on a
tampered export, fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.audit.test_audit_export import APPENDED, ORIGIN, SIGNER
from tests.unit.audit.test_audit_export_fast_lines import JSON, TEXT

from branchline_audit.domain import export
from branchline_audit.domain.canonical import GENESIS_PREV_HASH, entry_hash
from branchline_audit.domain.export import ExportRejected, ExportWriter, bytes_lines
from branchline_audit.domain.merkle import leaf_hash, root
from branchline_audit.domain.note import sign_checkpoint

pytestmark = pytest.mark.unit

KEYS = st.one_of(
    st.sampled_from(
        ["appended_at", "event", "hash", "line_digest", "position", "prev_hash", "proof", "view"]
    ),
    st.sampled_from(["line_digesT", "line_digest\x00", "line_dig", "m", "é", "\ue000", "😀"]),
    TEXT,
)
DIGESTS = st.one_of(
    st.sampled_from(["ab" * 32, "", 'a"b', "a\\b", "é", "\x7f"]),
    TEXT,
    JSON,
)


def outcome(call: Any) -> tuple[Any, ...]:
    try:
        return ("ok", *call())
    except ExportRejected as rejected:
        return "rejected", rejected.line, rejected.reason
    except (ValueError, TypeError, KeyError, RecursionError) as error:  # as _verify catches
        return "error", type(error)


@st.composite
def entry_lines(draw: st.DrawFn) -> str:
    entry: dict[str, Any] = draw(st.dictionaries(KEYS, JSON, max_size=6))
    if draw(st.booleans()):
        entry["line_digest"] = draw(DIGESTS)
    form = draw(st.sampled_from(["jcs", "sorted", "unsorted", "spaced"]))
    if form == "jcs":
        try:
            text = rfc8785.dumps(entry).decode("utf-8", "surrogatepass")
        except (ValueError, TypeError):
            form = "sorted"
    if form != "jcs":
        text = json.dumps(
            entry,
            sort_keys=form != "unsorted",
            ensure_ascii=draw(st.booleans()),
            separators=(", ", ": ") if form == "spaced" else (",", ":"),
        )
    return text + "\n"


def compared(text: str, content: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    return (
        outcome(lambda: export._read_entry(text, 7, content)),
        outcome(lambda: export._reference_entry(text, 7, content)),
    )


@given(entry_lines())
@settings(max_examples=300)
def test_a_jsonl_line_is_read_as_the_canonicaliser_reads_it(text: str) -> None:
    fast, reference = compared(text, "jsonl")
    assert fast == reference


def good_lines() -> list[str]:
    writer = ExportWriter("jsonl")
    lines, prev = [], GENESIS_PREV_HASH
    events = [
        {"event_id": "e1", "type": "visit.arrived", "data": {"n": 1, "é": "ü\n", "\ue000": [None]}},
        {"masked": True, "s": '"\\\x01'},
        {"n": 2**53 - 1, "t": [True, False, {"k": "😀"}]},
    ]
    for position, event in enumerate(events, start=1):
        digest = entry_hash(prev, position, event, APPENDED)
        lines.append(
            writer.entry_line(
                position=position,
                appended_at=APPENDED,
                prev_hash=prev,
                hash=digest,
                event=event,
                view="full",
                proof=[digest] if position == 2 else ([] if position == 3 else None),
            )
        )
        prev = digest
    return lines


def test_good_lines_are_read_alike_and_their_digest_is_over_the_entry_without_it() -> None:
    for line in good_lines():
        fast, reference = compared(line, "jsonl")
        assert fast == reference
        assert fast[0] == "ok"
        assert fast[2] == rfc8785.dumps({k: v for k, v in fast[1].items() if k != "line_digest"})


@given(st.data())
@settings(max_examples=300)
def test_a_changed_line_is_read_alike(data: st.DataObject) -> None:
    line = data.draw(st.sampled_from(good_lines()))
    at = data.draw(st.integers(min_value=0, max_value=len(line) - 2))
    change = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    char = data.draw(st.sampled_from([*list(' ",:{}[]\\0aAé\x1f'), "\\u0041", "1.0", "e5"]))
    head, tail = line[:at], line[at + (change != "insert") :]
    text = head + ("" if change == "delete" else char) + tail
    fast, reference = compared(text, "jsonl")
    assert fast == reference


def csv_export(events: list[dict[str, Any]]) -> bytes:
    writer = ExportWriter("csv")
    out, prev, leaves = [writer.header()], GENESIS_PREV_HASH, []
    for position, event in enumerate(events, start=1):
        digest = entry_hash(prev, position, event, APPENDED)
        out.append(
            writer.entry_line(
                position=position,
                appended_at=APPENDED,
                prev_hash=prev,
                hash=digest,
                event=event,
                view="full",
                proof=None,
            )
        )
        leaves.append(leaf_hash(digest))
        prev = digest
    tree_root = root(leaves)
    out.append(
        writer.manifest_line(
            SIGNER,
            {
                "origin": ORIGIN,
                "filters": {},
                "complete": True,
                "tree_size": len(events),
                "root_hash": tree_root.hex(),
                "checkpoint": sign_checkpoint(SIGNER, ORIGIN, len(events), tree_root),
            },
        )
    )
    return "".join(out).encode()


def jsonl_export() -> bytes:
    lines = good_lines()
    writer = ExportWriter("jsonl")
    for line in lines:  # the writer's digest and count, as the lines were written
        entry = json.loads(line)
        writer.entry_line(
            position=entry["position"],
            appended_at=entry["appended_at"],
            prev_hash=bytes.fromhex(entry["prev_hash"]),
            hash=bytes.fromhex(entry["hash"]),
            event=entry["event"],
            view=entry["view"],
            proof=None if "proof" not in entry else [bytes.fromhex(p) for p in entry["proof"]],
        )
    tree_root = root([leaf_hash(bytes.fromhex(json.loads(x)["hash"])) for x in lines])
    manifest = writer.manifest_line(
        SIGNER,
        {
            "origin": ORIGIN,
            "filters": {},
            "complete": True,
            "tree_size": 3,
            "root_hash": tree_root.hex(),
            "checkpoint": sign_checkpoint(SIGNER, ORIGIN, 3, tree_root),
        },
    )
    return "".join([*lines, manifest]).encode()


EXPORTS = {
    "jsonl": jsonl_export(),
    "csv": csv_export(
        [
            {"event_id": "e1", "data": {"é": 'ü\n,"', "\ue000": [None, 1]}},
            {"event_id": "e2", "data": {"😀": "x", "f": 1.5}},
            {"event_id": "e3", "deep": [[[{"a": []}]]]},
        ]
    ),
}


def verdicts(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = export.verify_export(bytes_lines(data), SIGNER.verifier())
    with monkeypatch.context() as patched:
        patched.setattr(export, "_read_entry", export._reference_entry)
        reference = export.verify_export(bytes_lines(data), SIGNER.verifier())
    return fast, reference


@pytest.mark.parametrize("content", ["jsonl", "csv"])
def test_both_exports_verify(content: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, reference = verdicts(EXPORTS[content], monkeypatch)
    assert fast == reference
    assert fast.ok, fast


@pytest.mark.parametrize("content", ["jsonl", "csv"])
def test_every_other_byte_changed_gets_the_reference_s_verdict(
    content: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = EXPORTS[content]
    for offset in range(0, len(data), 2):
        tampered = bytearray(data)
        tampered[offset] ^= 0x20 if offset % 4 else 0x01
        fast, reference = verdicts(bytes(tampered), monkeypatch)
        assert fast == reference, offset
        assert not fast.ok, offset

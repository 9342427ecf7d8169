"""Canonical entry bytes and the hash chain: exact bytes, and tampering found where it happened."""

from __future__ import annotations

import hashlib
import math
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    CanonicalisationError,
    ChainEntry,
    ChainVerifier,
    chain_hash,
    decode_canonical_bytes,
    entry_canonical_bytes,
    entry_encoder,
    entry_hash,
    entry_leaf_hash,
    event_json,
    format_appended_at,
    same_json,
    verify_chain,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def make_event(position: int, note: str = "") -> dict[str, Any]:
    return {
        "event_id": f"00000000-0000-4000-8000-{position:012d}",
        "type": "visit.recorded",
        "schema_version": 1,
        "occurred_at": "2024-05-01T09:00:00Z",
        "client_id": f"c-{position % 7}",
        "actor": {"id": "rm-1", "role": "rm"},
        "branch_id": None,
        "data": {"note": note or f"note {position}", "amount": position * 1.5, "ok": True},
    }


def make_chain(count: int, start: int = 1, prev: bytes = GENESIS_PREV_HASH) -> list[ChainEntry]:
    entries: list[ChainEntry] = []
    for position in range(start, start + count):
        event = make_event(position)
        appended_at = format_appended_at(T0 + timedelta(seconds=position))
        digest = entry_hash(prev, position, event, appended_at)
        entries.append(ChainEntry(position, event, appended_at, prev, digest))
        prev = digest
    return entries


def ref_mth(leaf_inputs: list[bytes]) -> bytes:
    """RFC 6962 MTH, naive, independent of the code under test."""
    if not leaf_inputs:
        return hashlib.sha256(b"").digest()
    if len(leaf_inputs) == 1:
        return hashlib.sha256(b"\x00" + leaf_inputs[0]).digest()
    k = 1
    while k * 2 < len(leaf_inputs):
        k *= 2
    left, right = ref_mth(leaf_inputs[:k]), ref_mth(leaf_inputs[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- the definition -------------------------------------------------------------------------------


def test_canonical_bytes_are_exactly_the_documented_json() -> None:
    event = {
        "type": "t",
        "b": 1,
        "a": [True, None, "\u00e9", 1.0, 0.1],
        "\u20ac": {"z": 2, "y": ""},
    }
    expected = (
        b'{"appended_at":"2024-05-01T09:30:00.000000Z",'
        b'"event":{"a":[true,null,"\xc3\xa9",1,0.1],"b":1,"type":"t","\xe2\x82\xac":{"y":"","z":2}},'
        b'"format":"branchline.audit.entry.v1","position":1}'
    )
    assert entry_canonical_bytes(1, event, "2024-05-01T09:30:00.000000Z") == expected


def test_member_order_of_the_event_does_not_matter() -> None:
    a = {"x": 1, "y": {"p": "q", "r": [1, 2]}}
    b = {"y": {"r": [1, 2], "p": "q"}, "x": 1}
    stamp = "2024-05-01T09:30:00.000000Z"
    assert entry_canonical_bytes(3, a, stamp) == entry_canonical_bytes(3, b, stamp)


def test_chain_hash_is_sha256_of_prev_then_canonical() -> None:
    canonical = b'{"anything":1}'
    assert (
        chain_hash(GENESIS_PREV_HASH, canonical) == hashlib.sha256(bytes(32) + canonical).digest()
    )
    assert bytes(32) == GENESIS_PREV_HASH
    with pytest.raises(ValueError, match="32 bytes"):
        chain_hash(b"short", canonical)


def test_entry_leaf_hash_is_the_rfc6962_leaf_of_the_raw_hash() -> None:
    digest = hashlib.sha256(b"entry").digest()
    assert entry_leaf_hash(digest) == hashlib.sha256(b"\x00" + digest).digest()
    with pytest.raises(ValueError, match="32 bytes"):
        entry_leaf_hash(digest.hex().encode())


def test_format_appended_at() -> None:
    assert format_appended_at(T0) == "2024-05-01T09:30:00.000000Z"
    paris = timezone(timedelta(hours=2))
    moment = datetime(2024, 5, 1, 11, 30, 0, 123456, tzinfo=paris)
    assert format_appended_at(moment) == "2024-05-01T09:30:00.123456Z"
    with pytest.raises(CanonicalisationError, match="timezone-aware"):
        format_appended_at(datetime(2024, 5, 1, 9, 30))


@pytest.mark.parametrize(
    ("position", "event", "appended_at", "message"),
    [
        (0, {}, "2024-05-01T09:30:00.000000Z", "position must be in"),
        (2**53, {}, "2024-05-01T09:30:00.000000Z", "position must be in"),
        (True, {}, "2024-05-01T09:30:00.000000Z", "must be an int"),
        (1, {}, "2024-05-01T09:30:00Z", "appended_at must look like"),
        (1, {}, "2024-05-01 09:30:00.000000+00:00", "appended_at must look like"),
        (1, [], "2024-05-01T09:30:00.000000Z", "JSON object"),
        (1, {"when": T0}, "2024-05-01T09:30:00.000000Z", "canonicalisable"),
        (1, {"tags": {"a"}}, "2024-05-01T09:30:00.000000Z", "canonicalisable"),
        (1, {"n": math.nan}, "2024-05-01T09:30:00.000000Z", "canonicalisable"),
        (1, {"n": 2**60}, "2024-05-01T09:30:00.000000Z", "canonicalisable"),
        (1, {1: "non-string key"}, "2024-05-01T09:30:00.000000Z", "canonicalisable"),
        (1, {"s": "lone \ud800"}, "2024-05-01T09:30:00.000000Z", "canonicalisable"),
    ],
)
def test_entries_without_canonical_bytes_are_refused(
    position: int, event: Any, appended_at: str, message: str
) -> None:
    with pytest.raises(CanonicalisationError, match=message):
        entry_canonical_bytes(position, event, appended_at)


# --- verifying a chain ------------------------------------------------------------------------


def test_a_good_chain_verifies() -> None:
    entries = make_chain(25)
    verdict = verify_chain(entries)
    assert verdict.ok
    assert verdict.entries == 25
    assert verdict.head == entries[-1].hash.hex()
    assert verdict.first_bad_position is None
    assert verdict.reason is None
    assert verdict.tree_root == ref_mth([e.hash for e in entries]).hex()


def test_the_chain_is_recomputable_from_the_written_definition() -> None:
    """A third party's recomputation, with hashlib and a hand-built JCS string only."""
    entry = make_chain(1)[0]
    canonical = (
        b'{"appended_at":"2024-05-01T09:30:01.000000Z","event":{"actor":{"id":"rm-1","role":"rm"},'
        b'"branch_id":null,"client_id":"c-1","data":{"amount":1.5,"note":"note 1","ok":true},'
        b'"event_id":"00000000-0000-4000-8000-000000000001","occurred_at":"2024-05-01T09:00:00Z",'
        b'"schema_version":1,"type":"visit.recorded"},"format":"branchline.audit.entry.v1",'
        b'"position":1}'
    )
    assert entry.hash == hashlib.sha256(bytes(32) + canonical).digest()


def test_an_empty_chain_verifies() -> None:
    verdict = verify_chain([])
    assert verdict.ok
    assert verdict.entries == 0
    assert verdict.head == "00" * 32
    assert verdict.tree_root == hashlib.sha256(b"").hexdigest()


def _alter_event(entry: ChainEntry, index: int) -> ChainEntry:
    event = {**entry.event, "data": dict(entry.event["data"])}
    note = event["data"]["note"]
    i = index % len(note)
    event["data"]["note"] = note[:i] + chr(ord(note[i]) ^ 1) + note[i + 1 :]
    return replace(entry, event=event)


def _alter_appended_at(entry: ChainEntry, index: int) -> ChainEntry:
    digits = [i for i, ch in enumerate(entry.appended_at) if ch.isdigit()]
    i = digits[index % len(digits)]
    ch = entry.appended_at[i]
    other = "1" if ch == "0" else "0"
    return replace(entry, appended_at=entry.appended_at[:i] + other + entry.appended_at[i + 1 :])


def _flip(value: bytes, index: int) -> bytes:
    changed = bytearray(value)
    changed[index % len(changed)] ^= 0x01
    return bytes(changed)


ALTERATIONS: dict[str, Callable[[ChainEntry, int], ChainEntry]] = {
    "event": _alter_event,
    "appended_at": _alter_appended_at,
    "position": lambda e, i: replace(e, position=e.position + 1 + i % 3),
    "prev_hash": lambda e, i: replace(e, prev_hash=_flip(e.prev_hash, i)),
    "hash": lambda e, i: replace(e, hash=_flip(e.hash, i)),
}


@settings(database=None, deadline=None, max_examples=200)
@given(
    length=st.integers(1, 30),
    data=st.data(),
    field=st.sampled_from(sorted(ALTERATIONS)),
    byte=st.integers(0, 1000),
)
def test_one_altered_field_is_found_at_its_position(
    length: int, data: st.DataObject, field: str, byte: int
) -> None:
    entries = make_chain(length)
    target = data.draw(st.integers(1, length))
    entries[target - 1] = ALTERATIONS[field](entries[target - 1], byte)
    verdict = verify_chain(entries)
    assert not verdict.ok
    assert verdict.first_bad_position == target
    assert verdict.entries == target - 1
    expected_head = GENESIS_PREV_HASH if target == 1 else entries[target - 2].hash
    assert verdict.head == expected_head.hex()
    assert verdict.reason


@settings(database=None, deadline=None, max_examples=100)
@given(length=st.integers(2, 30), data=st.data())
def test_a_deleted_entry_is_found(length: int, data: st.DataObject) -> None:
    entries = make_chain(length)
    gone = data.draw(st.integers(1, length - 1))  # deleting the last entry is a truncation
    del entries[gone - 1]
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_position) == (False, gone)
    assert "missing" in (verdict.reason or "")


@settings(database=None, deadline=None, max_examples=100)
@given(length=st.integers(2, 30), data=st.data())
def test_swapped_entries_are_found(length: int, data: st.DataObject) -> None:
    entries = make_chain(length)
    a = data.draw(st.integers(1, length - 1))
    b = data.draw(st.integers(a + 1, length))
    entries[a - 1], entries[b - 1] = entries[b - 1], entries[a - 1]
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_position) == (False, a)


def test_renumbered_deletion_is_found() -> None:
    """Deleting an entry and renumbering the later ones breaks the prev_hash link."""
    entries = make_chain(6)
    del entries[2]
    renumbered = [replace(e, position=i) for i, e in enumerate(entries, start=1)]
    verdict = verify_chain(renumbered)
    assert (verdict.ok, verdict.first_bad_position) == (False, 3)


def test_a_duplicated_entry_is_found() -> None:
    entries = make_chain(5)
    entries.insert(3, entries[2])
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_position) == (False, 4)


def test_an_event_without_canonical_bytes_is_reported_not_raised() -> None:
    entries = make_chain(3)
    entries[1] = replace(entries[1], event={"bad": {1, 2}})
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_position) == (False, 2)
    assert "canonical" in (verdict.reason or "")


def test_verification_stops_reading_at_the_first_bad_entry() -> None:
    entries = make_chain(10)
    entries[3] = replace(entries[3], hash=bytes(32))
    read: list[int] = []

    def stream() -> Iterator[ChainEntry]:
        for entry in entries:
            read.append(entry.position)
            yield entry

    assert verify_chain(stream()).first_bad_position == 4
    assert read == [1, 2, 3, 4]


def test_a_segment_verifies_from_a_trusted_point() -> None:
    entries = make_chain(12)
    verdict = verify_chain(entries[5:], start_position=6, prev_hash=entries[4].hash)
    assert (verdict.ok, verdict.entries, verdict.head) == (True, 7, entries[-1].hash.hex())
    assert verdict.tree_root is None
    wrong = verify_chain(entries[5:], start_position=6, prev_hash=entries[3].hash)
    assert (wrong.ok, wrong.first_bad_position) == (False, 6)
    with pytest.raises(ValueError, match="genesis"):
        ChainVerifier(start_position=1, prev_hash=entries[0].hash)


def test_the_verifier_can_be_fed_page_by_page() -> None:
    entries = make_chain(9)
    verifier = ChainVerifier()
    for page in (entries[:4], entries[4:]):
        for entry in page:
            assert verifier.feed(entry)
    assert verifier.verdict() == verify_chain(entries)
    assert not verifier.feed(entries[0])  # position 1 again
    assert verifier.failed
    assert not verifier.feed(entries[1])  # ignored once failed
    assert verifier.verdict().first_bad_position == 10


def test_verification_runs_in_constant_memory() -> None:
    def stream(count: int) -> Iterator[ChainEntry]:
        prev = GENESIS_PREV_HASH
        for position in range(1, count + 1):
            event = make_event(position, note="x" * 2000)
            appended_at = format_appended_at(T0)
            digest = entry_hash(prev, position, event, appended_at)
            yield ChainEntry(position, event, appended_at, prev, digest)
            prev = digest

    tracemalloc.start()
    try:
        verdict = verify_chain(stream(5_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verdict.ok
    assert verdict.entries == 5_000
    assert peak < 1_000_000  # holding the entries would take over 10 MB


def _with_bytes(entries: list[ChainEntry]) -> list[ChainEntry]:
    """``entries`` as the ledger stores them: with their canonical bytes, and the event
    column holding the event's JSON from those bytes (``amount: 3.0`` is written ``3``)."""
    stored: list[ChainEntry] = []
    for e in entries:
        canonical = entry_canonical_bytes(e.position, e.event, e.appended_at)
        column = orjson.loads(event_json(canonical, e.position, e.appended_at))
        stored.append(replace(e, event=column, canonical=canonical))
    return stored


def test_stored_canonical_bytes_decode_to_what_they_encode() -> None:
    entry = _with_bytes(make_chain(1))[0]
    assert entry.canonical is not None
    assert decode_canonical_bytes(entry.canonical) == (
        entry.position,
        dict(entry.event),
        entry.appended_at,
    )


@pytest.mark.parametrize(
    "bad",
    [
        b'{"appended_at": "2024-05-01T09:30:01.000000Z"}',
        b"\xff",
        b"[]",
        b'{"appended_at":"2024-05-01T09:30:01.000000Z","event":{},'
        b'"format":"branchline.audit.entry.v2","position":1}',
        b'{"appended_at":"2024-05-01T09:30:01.000000Z","event":{},'
        b'"format":"branchline.audit.entry.v1","position":1,"position":1}',
        b'{"position":1,"appended_at":"2024-05-01T09:30:01.000000Z","event":{},'
        b'"format":"branchline.audit.entry.v1"}',
    ],
)
def test_bytes_that_are_not_an_entrys_canonical_bytes_are_refused(bad: bytes) -> None:
    with pytest.raises(CanonicalisationError):
        decode_canonical_bytes(bad)


def test_the_chain_hashes_stored_bytes_and_checks_they_match_the_columns() -> None:
    entries = _with_bytes(make_chain(6))
    assert verify_chain(entries).ok
    other = dict(entries[2].event, data={"note": "rewritten"})
    cases = {
        "event": replace(entries[2], event=other),
        "appended_at": replace(entries[2], appended_at=format_appended_at(T0)),
        "bytes": replace(entries[2], canonical=entries[3].canonical),
    }
    for name, bad in cases.items():
        verdict = verify_chain([*entries[:2], bad, *entries[3:]])
        assert verdict.first_bad_position == 3, name
    # rows without stored bytes (written before they were stored) verify from their content
    plain = make_chain(6)
    assert verify_chain([*plain[:3], *_with_bytes(plain)[3:]]).ok


# The fast path (orjson, sorted keys) must give exactly the bytes of the reference JCS
# implementation for every document it takes, and leave every other one to it (#12).
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
)
_json_keys = st.text(max_size=6) | st.sampled_from(["a", "B", "_", "é", "\ue000", "\U0001f600"])
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_json_keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(event=st.dictionaries(_json_keys, _json_values, max_size=6))
def test_canonical_bytes_are_those_of_the_reference_jcs_implementation(
    event: dict[str, Any],
) -> None:
    import rfc8785

    document = {
        "appended_at": "2024-05-01T09:30:00.000000Z",
        "event": event,
        "format": "branchline.audit.entry.v1",
        "position": 7,
    }
    try:
        expected = rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError):
        expected = None
    if expected is None or _beyond_safe(event):  # numbers: refused, docs/audit.md
        with pytest.raises(CanonicalisationError):
            entry_canonical_bytes(7, event, "2024-05-01T09:30:00.000000Z")
        return
    assert entry_canonical_bytes(7, event, "2024-05-01T09:30:00.000000Z") == expected


def _beyond_safe(value: Any) -> bool:
    """Whether ``value`` holds a number (not a boolean) beyond ±(2**53 - 1), independently
    of the code under test."""
    if isinstance(value, dict):
        return any(_beyond_safe(v) for v in value.values())
    if isinstance(value, list):
        return any(_beyond_safe(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not abs(value) <= 2**53 - 1


# --- numbers: nothing appended that cannot be verified, nothing silently altered -----------

AT = "2024-05-01T09:30:00.000000Z"
_any_number = (
    st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=2.0**52, max_value=2.0**56).flatmap(lambda f: st.sampled_from([f, -f]))
    | st.sampled_from([1e16, 1e21, 1e300, 2.0**53, 2.0**53 - 1, 1.0, -0.0, 5e-324, 1e-7])
)
_numeric_values = st.recursive(
    _any_number | st.booleans() | st.none() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


def _stored_entry(position: int, event: dict[str, Any], prev: bytes) -> ChainEntry:
    """An entry as the ledger stores it: its canonical bytes, and the event column holding
    the event's JSON from those bytes (what the append hands PostgreSQL), parsed back."""
    canonical = entry_canonical_bytes(position, event, AT)
    column = orjson.loads(event_json(canonical, position, AT))
    return ChainEntry(position, column, AT, prev, chain_hash(prev, canonical), canonical=canonical)


@settings(max_examples=400, deadline=None)
@given(data=st.dictionaries(st.text(max_size=4), _numeric_values, max_size=4))
def test_an_event_is_refused_at_append_or_verifies_for_good(data: dict[str, Any]) -> None:
    """Fault (a): ``1e16`` was appended (JCS writes ``10000000000000000``) and never verified
    again. Whatever numbers an event holds, it is either refused before anything is appended
    (exactly when one lies beyond ±(2**53 - 1)) or its entry verifies, stored bytes and
    column alike; and what it verifies as is the event's own numbers (only ``1.0`` written
    as JCS writes it, ``1``)."""
    event = {"type": "x.y", "data": data}
    if _beyond_safe(event):
        with pytest.raises(CanonicalisationError, match="outside"):
            entry_canonical_bytes(1, event, AT)
        return
    entries = [_stored_entry(1, make_event(1), GENESIS_PREV_HASH)]
    entries.append(_stored_entry(2, event, entries[0].hash))
    assert verify_chain(entries).ok
    _, decoded, _ = decode_canonical_bytes(entries[1].canonical or b"")
    assert decoded == event  # the same numbers (Python: 1 == 1.0), only written canonically
    assert same_json(decoded, entries[1].event)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (1e16, "data.amount"),
        (-1e16, "data.amount"),
        (2.0**53, "data.amount"),
        (1e21, "data.amount"),
        (1e300, "data.amount"),
        ([0.5, {"x": 1e300}], "data.amount.1.x"),
        (2**53, "data.amount"),
        (-(2**63), "data.amount"),
    ],
    ids=repr,
)
def test_a_number_beyond_the_safe_range_is_refused_naming_where_not_what(
    value: Any, where: str
) -> None:
    event = {"type": "product.sold", "data": {"note": "n", "amount": value}}
    with pytest.raises(CanonicalisationError) as refused:
        entry_canonical_bytes(1, event, AT)
    reason = str(refused.value)
    assert f"the number at {where} is outside ±(2**53 - 1)" in reason
    for shown in ("1e", "10000000000000000", "9007199254740992", "9223372036854775808"):
        assert shown not in reason  # D-04: the value may be personal; the reason is logged


def test_the_largest_safe_numbers_are_appended_and_verify() -> None:
    event = {"type": "x.y", "data": {"a": 2.0**53 - 1, "b": -(2**53 - 1), "c": 1.0, "d": 0.1}}
    entry = _stored_entry(1, event, GENESIS_PREV_HASH)
    assert entry.canonical is not None
    assert b'"a":9007199254740991,"b":-9007199254740991,"c":1,"d":0.1' in entry.canonical
    assert verify_chain([entry]).ok


def test_same_json_is_equality_with_exact_types() -> None:
    assert same_json({"a": [1, "x", None, True, 0.5]}, {"a": [1, "x", None, True, 0.5]})
    for left, right in (
        (1, 1.0),
        (1, True),
        (0, False),
        ({"a": [0]}, {"a": [False]}),
        ({"a": 1}, {"a": 1, "b": 2}),
        ([1], [1, 1]),
        ([1], (1,)),
        ({"a": {"b": 2}}, {"a": {"b": 2.0}}),
    ):
        assert left == right or left != right  # whatever Python says
        assert not same_json(left, right), (left, right)
        assert not same_json(right, left), (right, left)


def test_a_column_differing_only_in_a_json_type_is_found() -> None:
    """Fault (b), the full check: the column holds ``1.0`` or ``true`` where the hashed bytes
    hold ``1``."""
    event = {"type": "x.y", "data": {"n": 1, "m": [0]}}
    entry = _stored_entry(1, event, GENESIS_PREV_HASH)
    for column in (
        {"type": "x.y", "data": {"n": 1.0, "m": [0]}},
        {"type": "x.y", "data": {"n": True, "m": [0]}},
        {"type": "x.y", "data": {"n": 1, "m": [False]}},
    ):
        verdict = verify_chain([replace(entry, event=column)])
        assert not verdict.ok
        assert verdict.first_bad_position == 1
        assert "another JSON type" in (verdict.reason or "")


@pytest.mark.parametrize("code", [*range(0x20), 0x22, 0x5C, 0x7F, 0x80, 0x2028, 0xFFFF])
def test_every_escaped_character_is_written_as_jcs_writes_it(code: int) -> None:
    import rfc8785

    event = {"note": f"a{chr(code)}b", "n": 2**53 - 1}
    document = {
        "appended_at": "2024-05-01T09:30:00.000000Z",
        "event": event,
        "format": "branchline.audit.entry.v1",
        "position": 1,
    }
    assert entry_canonical_bytes(1, event, "2024-05-01T09:30:00.000000Z") == rfc8785.dumps(document)


@settings(max_examples=400, deadline=None)
@given(
    event=st.dictionaries(_json_keys, _json_values, max_size=6),
    position=st.integers(-2, 2**53 + 2) | st.sampled_from([1, 2**53 - 1, True]),
    as_mapping=st.booleans(),
)
def test_the_encoder_of_one_append_gives_the_canonical_bytes_of_each_entry(
    event: dict[str, Any], position: int, as_mapping: bool
) -> None:
    """#12: the ledger writer's encoder (the append time checked and its head built once)
    gives exactly :func:`entry_canonical_bytes`' bytes, or refuses what it refuses."""
    from types import MappingProxyType

    given_event: Any = MappingProxyType(event) if as_mapping else event
    try:
        expected: bytes | type[Exception] = entry_canonical_bytes(position, given_event, AT)
    except CanonicalisationError:
        expected = CanonicalisationError
    encode = entry_encoder(AT)
    if expected is CanonicalisationError:
        with pytest.raises(CanonicalisationError):
            encode(position, given_event)
    else:
        assert encode(position, given_event) == expected


def test_the_encoder_refuses_a_malformed_append_time() -> None:
    with pytest.raises(CanonicalisationError, match="appended_at"):
        entry_encoder("2024-05-01T09:30:00Z")

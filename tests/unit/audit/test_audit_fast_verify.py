"""The fast paths of ledger append and verify (#12) decide exactly as the full checks do.

Appending encodes an event with orjson only when that is provably its JCS encoding; verifying
takes a stored row by byte comparisons only when that proves it good. Whatever they cannot
prove goes the full way, so every tampered column is still found, with the same verdict.
"""

from __future__ import annotations

import enum
import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    PENDING_LEAVES,
    CanonicalisationError,
    ChainVerifier,
    _jcs_event_bytes,
    chain_hash,
    encodes_event,
    entry_canonical_bytes,
    entry_encoder,
    entry_head,
    event_json,
    format_appended_at,
    grow_by_leaves,
    proven_event_after,
    stored_event,
)
from branchline_audit.domain.merkle import AlignedRange, CompactRange, leaf_hash
from branchline_audit.domain.records import index_row, prune_record, pruned_marker
from branchline_audit.domain.verification import (
    ROW_FIELDS,
    LedgerAuditor,
    LedgerVerdict,
    StoredCheckpoint,
    stored_entry,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
AT = format_appended_at(T0)


def envelope(n: int, **data: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=n + 1)),
        "type": "client.registered",
        "occurred_at": "2024-05-01T09:00:00.25+02:00",
        "client_id": f"C-{n}",
        "branch_id": "BR-1",
        "actor": {"id": "s-1", "role": "teller"},
        "stream_version": n,
        "synthetic": False,
        "late_entry": None,
        "data": {"note": f"visit {n}: 10:30.5", "tags": ["a", "b"], **data},
    }


def rows(count: int, **data: Any) -> list[list[Any]]:
    """Stored rows (ROW_FIELDS order) of a good ledger, as the database hands them back."""
    out: list[list[Any]] = []
    prev = GENESIS_PREV_HASH
    for position in range(1, count + 1):
        canonical = entry_canonical_bytes(position, envelope(position, **data), AT)
        # The event column holds the event's JSON from its canonical bytes (the append hands
        # PostgreSQL that text), as the jsonb codec parses it back.
        event = orjson.loads(event_json(canonical, position, AT))
        digest = chain_hash(prev, canonical)
        out.append(
            [
                position,
                prev,
                digest,
                canonical,
                event,
                T0,
                None,
                uuid.UUID(event["event_id"]),
                event["type"],
                event["client_id"],
                event["actor"]["id"],
                event["branch_id"],
                datetime.fromisoformat(event["occurred_at"]),
            ]
        )
        prev = digest
    return out


def jsonb_text(value: Any) -> str:
    """``value`` as PostgreSQL's ``jsonb`` writes it (``event::text``, how the verifier's scan
    reads the column): keys by length, then bytes; ``", "`` and ``": "`` between members."""
    if type(value) is dict:
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return (
            "{"
            + ", ".join(
                f"{json.dumps(k, ensure_ascii=False)}: {jsonb_text(value[k])}" for k in keys
            )
            + "}"
        )
    if type(value) is list:
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def pg_binary(moment: datetime) -> bytes:
    """``timestamptz_send``'s bytes: microseconds since 2000-01-01 UTC, big-endian."""
    delta = moment - PG_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros.to_bytes(8, "big", signed=True)


def scanned(row: list[Any]) -> list[Any]:
    """``row`` as the verifier's scan reads it (#12): the event as ``jsonb``'s text, both
    times in PostgreSQL's binary form, the event id as its text; a value no such column
    could hold (a test's own) as it is."""
    out = list(row)
    if isinstance(row[4], dict):
        out[4] = jsonb_text(row[4])
    for i in (5, 12):
        if isinstance(row[i], datetime) and row[i].tzinfo is not None:
            out[i] = pg_binary(row[i])
    if isinstance(row[7], uuid.UUID):
        out[7] = str(row[7])
    return out


def verdicts(table: list[list[Any]]) -> tuple[LedgerVerdict, LedgerVerdict]:
    """The verdict by the fast path (feed_row) and by the full checks alone (feed); the fast
    path is also fed every row with its event as ``jsonb``'s text, and as the scan reads
    it (:func:`scanned`), row by row and in pages, and must come to the same verdict (#12)."""
    fast = LedgerAuditor([], verifier=None, origin="")
    text = LedgerAuditor([], verifier=None, origin="")
    scan = LedgerAuditor([], verifier=None, origin="")
    full = LedgerAuditor([], verifier=None, origin="")
    for row in table:
        fast.feed_row(row)
        as_text = list(row)
        if isinstance(row[4], dict):
            as_text[4] = jsonb_text(row[4])
        text.feed_row(as_text)
        scan.feed_row(scanned(row))
        full.feed(stored_entry(row))
    assert text.verdict() == fast.verdict()
    assert scan.verdict() == fast.verdict()
    assert paged_verdict(table) == fast.verdict()
    assert paged_verdict([scanned(row) for row in table]) == fast.verdict()
    return fast.verdict(), full.verdict()


def paged_verdict(
    table: list[list[Any]], checkpoints: tuple[StoredCheckpoint, ...] = ()
) -> LedgerVerdict:
    """The verdict of the rows fed a page at a time (``feed_rows``, as the scan feeds them,
    #12), in pages of one row, of three and of the rest: it must be ``feed_row``'s."""
    auditor = LedgerAuditor(checkpoints, verifier=None, origin="")
    auditor.feed_rows(table[:1])
    auditor.feed_rows(iter(table[1:4]))
    auditor.feed_rows(table[4:])
    auditor.feed_rows([])
    return auditor.verdict()


def test_a_good_ledger_verifies_by_the_fast_path() -> None:
    fast, full = verdicts(rows(20))
    assert fast == full
    assert fast.ok
    assert fast.entries == 20


def _flip(value: bytes) -> bytes:
    return value[:-3] + bytes([value[-3] ^ 1]) + value[-2:]


TAMPERS: dict[str, Callable[[list[Any]], None]] = {
    "position": lambda r: r.__setitem__(0, r[0] + 1000),
    "prev_hash": lambda r: r.__setitem__(1, _flip(r[1])),
    "hash": lambda r: r.__setitem__(2, _flip(r[2])),
    "canonical byte": lambda r: r.__setitem__(3, r[3].replace(b"visit", b"visiT")),
    "canonical whitespace": lambda r: r.__setitem__(3, r[3].replace(b'"type":', b'"type": ')),
    "event value": lambda r: r[4]["data"].__setitem__("note", "altered"),
    "event member added": lambda r: r[4].__setitem__("extra", 1),
    "appended_at": lambda r: r.__setitem__(5, r[5] + timedelta(microseconds=1)),
    "pruned_at": lambda r: r.__setitem__(6, T0),
    "event_id": lambda r: r.__setitem__(7, uuid.UUID(int=999_999)),
    "event_type": lambda r: r.__setitem__(8, "client.erased"),
    "client_id": lambda r: r.__setitem__(9, "C-other"),
    "client_id null": lambda r: r.__setitem__(9, None),
    "actor_id": lambda r: r.__setitem__(10, "s-2"),
    "branch_id": lambda r: r.__setitem__(11, "BR-2"),
    "occurred_at": lambda r: r.__setitem__(12, r[12] + timedelta(microseconds=1)),
    "event pruned behind the ledger's back": lambda r: r.__setitem__(
        4, pruned_marker(r[4], pruned_at=T0)
    ),
}


@pytest.mark.parametrize("column", sorted(TAMPERS))
@pytest.mark.parametrize("position", [1, 5, 12])
def test_a_tampered_column_is_found_and_reported_as_the_full_check_reports_it(
    column: str, position: int
) -> None:
    table = rows(12)
    TAMPERS[column](table[position - 1])
    fast, full = verdicts(table)
    assert not fast.ok, column
    assert fast.first_bad_position == position, (column, fast.reason)
    assert fast == full, column


def test_every_bad_position_is_reported_by_the_fast_path_too() -> None:
    table = rows(30)
    for position, column in ((3, "event_id"), (11, "canonical byte"), (29, "hash")):
        TAMPERS[column](table[position - 1])
    fast, full = verdicts(table)
    assert fast == full
    assert fast.bad_positions == (3, 11, 29)


def test_rows_without_stored_bytes_are_verified_from_their_content_as_before() -> None:
    table = rows(6)
    for row in table[:3]:
        row[3] = None  # written before the bytes were stored (migration 004)
    table[1][4]["data"]["note"] = "altered"
    fast, full = verdicts(table)
    assert fast == full
    assert fast.bad_positions == (2,)


def test_a_missing_or_duplicated_position_is_found_by_every_path() -> None:
    table = rows(8)
    fast, full = verdicts(table[:3] + table[4:])
    assert fast == full
    assert fast.first_bad_position == 4, fast.reason
    fast, full = verdicts([*table[:4], list(table[3]), *table[4:]])
    assert fast == full
    assert fast.first_bad_position == 5, fast.reason


def test_an_event_column_read_as_text_that_is_not_json_is_reported_at_its_position() -> None:
    table = rows(6)
    auditor = LedgerAuditor([], verifier=None, origin="")
    for row in table:
        if row[0] == 4:
            row = [*row[:4], '{"event_id": ', *row[5:]]
        auditor.feed_row(row)
    verdict = auditor.verdict()
    assert verdict.bad_positions == (4,)
    assert verdict.reason == "column event is not JSON"


def test_an_event_read_as_text_is_decoded_as_the_jsonb_codec_decodes_it() -> None:
    (row,) = rows(1, k=1, m=[0.5, True, None])
    as_text = [*row[:4], jsonb_text(row[4]), *row[5:]]
    assert stored_entry(as_text) == stored_entry(row)


def test_the_fast_path_covers_row_fields_in_their_order() -> None:
    assert ROW_FIELDS[:4] == ("position", "prev_hash", "hash", "canonical")
    assert len(ROW_FIELDS) == len(rows(1)[0])


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        1.0,
        1e21,
        math.nan,
        2**53,
        -(2**53),
        (1, 2),
        uuid.UUID(int=5),
        Colour.RED,
        Level.HIGH,
        Name("x"),
        datetime(2024, 1, 1, tzinfo=UTC),
        {"nested": [{"deep": 0.5}]},
        {"é": 1},
        "é",
    ],
    ids=repr,
)
def test_what_orjson_might_encode_otherwise_takes_the_reference_path(value: Any) -> None:
    event = {"type": "x", "value": value}
    assert _jcs_event_bytes(event) is None
    document = {"appended_at": AT, "event": event, "format": "branchline.audit.entry.v1"}
    try:
        expected = rfc8785.dumps({**document, "position": 1})
        if value == 1e21:  # JCS writes it (1e+21), the ledger refuses it: beyond 2**53 - 1
            raise ValueError(value)
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError, TypeError, ValueError):
        with pytest.raises(CanonicalisationError):
            entry_canonical_bytes(1, event, AT)
        return
    assert entry_canonical_bytes(1, event, AT) == expected


def test_deep_nesting_takes_the_reference_path() -> None:
    event: dict[str, Any] = {"type": "x"}
    node = event
    for _ in range(70):
        node["n"] = {}
        node = node["n"]
    assert _jcs_event_bytes(event) is None


def _nested(depth: int, width: int, arrays: bool) -> dict[str, Any]:
    """An event holding a chain of ``depth`` containers, one inside the other (arrays or
    objects), and ``width`` empty objects and arrays beside it."""
    event: dict[str, Any] = {"type": "x", "wide": [{} if i % 2 else [] for i in range(width)]}
    node: Any = event
    for level in range(depth):
        child: Any = [] if arrays and level % 2 else {}
        if type(node) is dict:
            node["n"] = child
        else:
            node.append(child)
        node = child
    return event


def _taken_by_the_bracket_count(event: dict[str, Any]) -> bool:
    """What the orjson path took before the nesting was counted in the walk (#12): fewer
    opening brackets in all than the JCS depth limit."""
    encoded = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return encoded.count(b"{") + encoded.count(b"[") < 64


@settings(max_examples=300, deadline=None)
@given(depth=st.integers(0, 70), width=st.integers(0, 80), arrays=st.booleans())
def test_the_nesting_the_orjson_path_takes_gives_the_reference_bytes(
    depth: int, width: int, arrays: bool
) -> None:
    """The walk takes an event whose containers nest at most 62 levels below it (its entry's
    document then at most 63 deep, what ``_orjson_is_jcs`` takes), however many there are;
    everything the bracket count took, and the same bytes as the reference encoder, whichever
    path an entry takes. Rows holding it verify by every path alike."""
    event = _nested(depth, width, arrays)
    taken = _jcs_event_bytes(event)
    assert (taken is not None) == (depth <= 62)
    if _taken_by_the_bracket_count(event):
        assert taken is not None
    if taken is not None:
        assert taken == rfc8785.dumps(event)
    document = {"appended_at": AT, "event": event, "format": "branchline.audit.entry.v1"}
    assert entry_canonical_bytes(7, event, AT) == rfc8785.dumps({**document, "position": 7})
    assert entry_encoder(AT)(7, event) == entry_canonical_bytes(7, event, AT)
    canonical = entry_canonical_bytes(1, event, AT)
    proven = proven_event_after(canonical, entry_head(AT), 1)
    assert (proven is not None) == (depth <= 62)
    assert proven is None or proven == event
    table = rows(3, extra=event)
    fast, full = bytes_only_verdicts(bytes_only(table))
    assert fast == full
    assert fast.ok


def test_stored_bytes_are_taken_only_when_they_are_exactly_the_entrys() -> None:
    event = envelope(3)
    canonical = entry_canonical_bytes(3, event, AT)
    assert encodes_event(canonical, 3, AT, event)
    assert event_json(canonical, 3, AT) == rfc8785.dumps(event)
    assert not encodes_event(canonical, 4, AT, event)
    assert not encodes_event(canonical, 3, format_appended_at(T0 + timedelta(seconds=1)), event)
    for bad in (
        canonical.replace(b'"type":', b'"type": '),
        canonical.replace(b'"stream_version":3', b'"stream_version":3.0'),
        canonical.replace(b'{"actor":', b'{"actor":{},"actor":'),
        canonical.replace(b'"branch_id"', b'"\\u0062ranch_id"'),
        canonical.replace(b'"late_entry":null,', b""),  # another event's bytes
    ):
        assert not encodes_event(bad, 3, AT, event)

    # A column equal to the event only by Python's ==: another JSON text, not taken.
    event = envelope(3, k=1, m=[0])
    canonical = entry_canonical_bytes(3, event, AT)
    assert encodes_event(canonical, 3, AT, event)
    for column in _equal_only_to_python(event):
        assert column == event
        assert not encodes_event(canonical, 3, AT, column)


def _equal_only_to_python(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Columns ``==`` to ``event`` (of :func:`envelope` with ``k=1, m=[0]``) holding a
    number or boolean of another type."""
    data = event["data"]
    return [
        {**event, "stream_version": float(event["stream_version"])},
        {**event, "synthetic": 0},
        {**event, "data": {**data, "k": 1.0}},
        {**event, "data": {**data, "k": True}},
        {**event, "data": {**data, "m": [False]}},
        {**event, "data": {**data, "m": [0.0]}},
    ]


@pytest.mark.parametrize("case", range(6))
def test_a_column_of_another_json_type_is_found_by_both_paths(case: int) -> None:
    """Fault (b): ``1.0`` (or ``true``) stored in the event column where the hashed bytes hold
    ``1`` passed, because Python compares them equal."""
    table = rows(5, k=1, m=[0])
    table[2][4] = _equal_only_to_python(table[2][4])[case]
    fast, full = verdicts(table)
    assert fast == full
    assert not fast.ok
    assert fast.bad_positions == (3,)
    assert fast.reason is not None
    assert "another JSON type" in fast.reason


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.text(max_size=5), _values, max_size=5))
def test_the_fast_row_path_agrees_with_the_full_checks_on_any_event(
    data: dict[str, Any],
) -> None:
    try:
        table = rows(3, extra=data)
    except CanonicalisationError:
        return
    fast, full = verdicts(table)
    assert fast == full
    assert fast.ok  # whatever is appended verifies (numbers: docs/audit.md)


def _rehashed(table: list[list[Any]], position: int) -> None:
    """Recompute the hash of the entry at ``position`` from its (altered) bytes and every
    later link and hash: a rewrite the hash chain alone cannot see (no checkpoint here)."""
    for index in range(position - 1, len(table)):
        if index > position - 1:
            table[index][1] = table[index - 1][2]
        table[index][2] = chain_hash(table[index][1], table[index][3])


REHASHED_BYTES: dict[str, Callable[[bytes], bytes]] = {
    "whitespace": lambda c: c.replace(b'"type":', b'"type": '),
    "duplicate key": lambda c: c.replace(b'{"actor":', b'{"actor":{},"actor":'),
    "escaped key": lambda c: c.replace(b'"branch_id"', b'"\\u0062ranch_id"'),
    "a float where an integer was": lambda c: re.sub(
        rb'"stream_version":([0-9]+)', rb'"stream_version":\1.0', c
    ),
    "a byte": lambda c: c.replace(b"visit", b"visiT"),
}


@pytest.mark.parametrize("change", sorted(REHASHED_BYTES))
@pytest.mark.parametrize("position", [1, 5, 12])
def test_rewritten_bytes_with_every_hash_recomputed_are_found_by_both_paths(
    change: str, position: int
) -> None:
    """The stored bytes rewritten and every hash from there recomputed, so that the chain
    holds: the event column still holds the original event, so its encoding is not the
    bytes, and a form JCS never writes (whitespace, a duplicate or escaped key, ``5.0``) is
    not taken either. (With checkpoints the root would differ too; here there are none.)"""
    table = rows(12)
    row = table[position - 1]
    altered = REHASHED_BYTES[change](row[3])
    assert altered != row[3], change
    row[3] = altered
    _rehashed(table, position)
    fast, full = verdicts(table)
    assert fast == full, change
    assert fast.bad_positions == (position,), (change, fast.reason)


# ---------------------------------------------------------------- the event stored once (#12)
# Since migration 006 an entry stores its event only inside its canonical bytes (the event
# column is NULL). Such rows are fed with ``event`` None; every check that does not concern
# the event column must find what it found before, by both paths, and a row must read back as
# the same entry as when the column held the event.

COLUMN_TAMPERS = sorted(name for name in TAMPERS if not name.startswith("event "))
"""The tampers of :data:`TAMPERS` that do not change the event column (there is none)."""


def bytes_only(table: list[list[Any]]) -> list[list[Any]]:
    return [[*row[:4], None, *row[5:]] for row in table]


def bytes_only_verdicts(
    table: list[list[Any]], checkpoints: tuple[StoredCheckpoint, ...] = ()
) -> tuple[LedgerVerdict, LedgerVerdict]:
    """The verdict by the fast path (feed_row) and by the full checks alone (feed)."""
    fast = LedgerAuditor(checkpoints, verifier=None, origin="")
    full = LedgerAuditor(checkpoints, verifier=None, origin="")
    for row in table:
        fast.feed_row(row)
        full.feed(stored_entry(row))
    assert paged_verdict(table, checkpoints) == fast.verdict()
    return fast.verdict(), full.verdict()


def test_a_ledger_storing_its_events_once_verifies_by_the_fast_path() -> None:
    table = rows(20)
    fast, full = bytes_only_verdicts(bytes_only(table))
    assert fast == full
    assert fast.ok
    assert fast.entries == 20
    # What a reader sees: the same entry as when the column held the event.
    assert [stored_entry(r) for r in bytes_only(table)] == [stored_entry(r) for r in table]


def test_the_bytes_only_fast_path_proves_rows_without_the_full_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path really takes such rows (not the full checks with the same verdict)."""
    auditor = LedgerAuditor([], verifier=None, origin="")
    monkeypatch.setattr(auditor, "feed", lambda _: pytest.fail("full checks used"))
    for row in bytes_only(rows(10)):
        assert auditor.feed_row(row)
    paged = LedgerAuditor([], verifier=None, origin="")
    monkeypatch.setattr(paged, "feed", lambda _: pytest.fail("full checks used"))
    paged.feed_rows(bytes_only(rows(10)))
    assert paged.verdict() == auditor.verdict()
    assert paged.verdict().ok


@pytest.mark.parametrize("column", COLUMN_TAMPERS)
@pytest.mark.parametrize("position", [1, 5, 12])
def test_a_tampered_column_of_a_row_storing_its_event_once_is_found_by_both_paths(
    column: str, position: int
) -> None:
    table = bytes_only(rows(12))
    TAMPERS[column](table[position - 1])
    fast, full = bytes_only_verdicts(table)
    assert not fast.ok, column
    assert fast.first_bad_position == position, (column, fast.reason)
    assert fast == full, column


@pytest.mark.parametrize("position", [1, 5, 12])
def test_an_event_column_set_beside_bytes_that_hold_the_event_must_agree_with_them(
    position: int,
) -> None:
    """A column written where the entry stores its event only in its bytes is checked
    against the bytes like any column (the fast and full paths, and as jsonb's text)."""
    table = bytes_only(rows(12))
    altered = stored_entry(table[position - 1]).entry.event
    table[position - 1][4] = {**altered, "data": {"note": "altered"}}
    fast, full = verdicts(table)
    assert fast == full
    assert fast.bad_positions == (position,), fast.reason


@pytest.mark.parametrize("change", sorted(REHASHED_BYTES))
@pytest.mark.parametrize("position", [1, 5, 12])
def test_bytes_of_a_row_storing_its_event_once_rewritten_and_rehashed(
    change: str, position: int
) -> None:
    """Bytes in a form JCS never writes are found at their position by both paths. Bytes
    that are the canonical bytes of another event, with every later hash recomputed, hold
    as a chain (there is no second copy to compare, and an attacker able to rewrite the
    bytes could rewrite a column as well): the signed checkpoint over the original finds
    them, between the last checkpoint that holds and this one."""
    original = rows(12)
    tree = CompactRange()
    for row in original:
        tree.append(leaf_hash(row[2]))
    checkpoint = StoredCheckpoint(tree_size=12, root_hash=tree.root(), note="")
    table = bytes_only(original)
    row = table[position - 1]
    row[3] = REHASHED_BYTES[change](row[3])
    _rehashed(table, position)
    fast, full = bytes_only_verdicts(table, (checkpoint,))
    assert fast == full, change
    assert not fast.ok
    if change == "a byte":
        assert fast.first_bad_position == 1, fast.reason
        assert "history between positions 1 and 12 was rewritten" in (fast.reason or "")
    else:
        assert fast.bad_positions == (position,), (change, fast.reason)


def test_a_row_holding_neither_its_event_nor_bytes_is_reported() -> None:
    table = bytes_only(rows(6))
    table[3][3] = None
    fast, full = bytes_only_verdicts(table)
    assert fast == full
    assert fast.bad_positions == (4,)
    assert fast.reason == "entry holds neither its event nor canonical bytes"


def test_a_ledger_of_every_storage_form_verifies_and_each_form_is_checked() -> None:
    """Rows written before migration 004 (the event only), between 004 and 006 (both) and
    since (the bytes only), in one ledger, as a migrated ledger holds them."""
    table = rows(9)
    for row in table[:3]:
        row[3] = None
    table[6:] = bytes_only(table[6:])
    fast, full = bytes_only_verdicts(table)
    assert fast == full
    assert fast.ok
    table[1][4]["data"]["note"] = "altered"
    table[4][4]["data"]["note"] = "altered"
    table[7][9] = "C-other"
    fast, full = bytes_only_verdicts(table)
    assert fast == full
    assert fast.bad_positions == (2, 5, 8)


def test_bytes_are_proven_only_when_they_are_exactly_the_canonical_bytes_of_their_event() -> None:
    event = envelope(3)
    canonical = entry_canonical_bytes(3, event, AT)
    head = entry_head(AT)
    assert proven_event_after(canonical, head, 3) == event
    assert stored_event(canonical, 3) == event
    assert proven_event_after(canonical, head, 4) is None
    later = entry_head(format_appended_at(T0 + timedelta(seconds=1)))
    assert proven_event_after(canonical, later, 3) is None
    for bad in (
        canonical.replace(b'"type":', b'"type": '),
        canonical.replace(b'"stream_version":3', b'"stream_version":3.0'),
        canonical.replace(b'{"actor":', b'{"actor":{},"actor":'),
        canonical.replace(b'"branch_id"', b'"\\u0062ranch_id"'),
        canonical.replace(b'"note":"visit', b'"note":"v\\u00e9sit'),
        canonical[:-1],
    ):
        assert proven_event_after(bad, head, 3) is None
    assert stored_event(b"not an entry", 3) == {}
    assert stored_event(canonical.replace(b'"event":', b'"evenT":'), 3) == {}


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.text(max_size=5), _values, max_size=5))
def test_rows_storing_any_event_once_verify_by_both_paths(data: dict[str, Any]) -> None:
    try:
        table = rows(3, extra=data)
    except CanonicalisationError:
        return
    fast, full = bytes_only_verdicts(bytes_only(table))
    assert fast == full
    assert fast.ok
    assert [stored_entry(r) for r in bytes_only(table)] == [stored_entry(r) for r in table]


# ------------------------------------------------------- checkpoints on the fast path (#12)
# The fast path tests for a checkpoint only at the position where the next one is due (the
# auditor's ``_due``), and notes the prunes an entry names only for ``audit.pruned`` entries.
# Rewrites the chain cannot see must still be found by every checkpoint, as by the full checks.


def _checkpoints_over(
    table: list[list[Any]], sizes: tuple[int, ...]
) -> tuple[StoredCheckpoint, ...]:
    tree = CompactRange()
    roots = {0: tree.root()}
    for row in table:
        tree.append(leaf_hash(row[2]))
        roots[tree.size] = tree.root()
    return tuple(
        StoredCheckpoint(tree_size=size, root_hash=roots.get(size, bytes(32)), note="")
        for size in sizes
    )


CHECKPOINT_SIZES = {
    "every entry": tuple(range(1, 13)),
    "duplicated and empty": (0, 0, 3, 3, 7, 12, 12),
    "one past the end": (4, 13),
    "only the first": (1,),
}


@pytest.mark.parametrize("sizes", sorted(CHECKPOINT_SIZES))
@pytest.mark.parametrize("position", [1, 3, 4, 7, 8, 12])
def test_a_rewrite_with_every_hash_recomputed_is_found_by_each_checkpoint_on_the_fast_path(
    sizes: str, position: int
) -> None:
    original = rows(12)
    checkpoints = _checkpoints_over(original, CHECKPOINT_SIZES[sizes])
    fast, full = bytes_only_verdicts(bytes_only(original), checkpoints)
    assert fast == full, sizes
    assert fast.checkpoints_checked == full.checkpoints_checked
    table = bytes_only(original)
    table[position - 1][3] = REHASHED_BYTES["a byte"](table[position - 1][3])
    _rehashed(table, position)
    fast, full = bytes_only_verdicts(table, checkpoints)
    assert fast == full, sizes
    if any(size >= position for size in CHECKPOINT_SIZES[sizes]):
        assert not fast.ok, sizes


def test_the_fast_path_checks_every_checkpoint_without_the_full_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = bytes_only(rows(12))
    checkpoints = _checkpoints_over(rows(12), (0, 2, 2, 5, 12))
    auditor = LedgerAuditor(checkpoints, verifier=None, origin="")
    monkeypatch.setattr(auditor, "feed", lambda _: pytest.fail("full checks used"))
    for row in table:
        assert auditor.feed_row(row)
    verdict = auditor.verdict()
    assert verdict.ok
    assert verdict.checkpoints_checked == 5


def _ledger_of(events: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows storing each event once (in its bytes), chained."""
    out: list[list[Any]] = []
    prev = GENESIS_PREV_HASH
    for position, event in enumerate(events, start=1):
        canonical = entry_canonical_bytes(position, event, AT)
        digest = chain_hash(prev, canonical)
        out.append([position, prev, digest, canonical, None, T0, None, *index_row(event)])
        prev = digest
    return out


@pytest.mark.parametrize("named", [[[3, 3]], [[2, 4]], [[4, 4]], []])
def test_a_prune_is_found_named_or_not_as_by_the_full_checks(named: list[list[int]]) -> None:
    """The fast path notes the positions an ``audit.pruned`` entry names (and only such an
    entry's): a pruned entry no such entry names is reported, one named is not."""
    record = prune_record(
        now=T0, actor_id="s-9", ranges=named, count=1, cutoffs={}, held_clients_skipped=[]
    )
    events = [envelope(n) for n in range(1, 7)]
    table = _ledger_of([*events, record])
    pruned = table[2]  # position 3: its payload dropped by retention, hash and link kept
    pruned[3] = None
    pruned[4] = pruned_marker(events[2], pruned_at=T0)
    pruned[6] = T0
    fast, full = bytes_only_verdicts(table)
    assert fast == full
    assert fast.ok == any(low <= 3 <= high for low, high in named), fast.reason


# ---------------------------------------------------------------- the tree grown in batches (#12)


@settings(max_examples=300, deadline=None)
@given(before=st.integers(0, 200), batches=st.lists(st.integers(0, 150), max_size=4))
def test_the_tree_grown_in_batches_is_the_tree_grown_leaf_by_leaf(
    before: int, batches: list[int]
) -> None:
    hashes = [chain_hash(GENESIS_PREV_HASH, b"%d" % i) for i in range(before + sum(batches))]
    one_by_one = CompactRange()
    for value in hashes:
        one_by_one.append(leaf_hash(value))
    batched = CompactRange()
    for value in hashes[:before]:
        batched.append(leaf_hash(value))
    done = before
    for count in batches:
        grow_by_leaves(batched, hashes[done : done + count])
        done += count
    assert (batched.size, batched.hashes) == (one_by_one.size, one_by_one.hashes)


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), max_size=5),
    tamper=st.one_of(st.none(), st.integers(1, 40)),
)
def test_the_verifiers_tree_answers_every_checkpoint_as_a_tree_grown_per_entry(
    sizes: list[int], tamper: int | None
) -> None:
    """The chain's tree is read at each checkpoint and at the end; the pending leaves are
    folded in whenever it is, whatever the checkpoints' sizes and a tamper between them."""
    original = rows(40)
    checkpoints = _checkpoints_over(original, tuple(sizes))
    table = bytes_only(original)
    if tamper is not None:
        table[tamper - 1][3] = REHASHED_BYTES["a byte"](table[tamper - 1][3])
        _rehashed(table, tamper)
    fast, full = bytes_only_verdicts(table, checkpoints)
    assert fast == full
    expected_bad = tamper is not None and any(size >= tamper for size in sizes)
    assert fast.ok == (not expected_bad and all(size <= 40 for size in sizes)), fast.reason
    verifier = ChainVerifier(tree_leaves=len(table))
    reference = CompactRange()
    for row in table:
        verifier.feed(stored_entry(row).entry)
        reference.append(leaf_hash(row[2]))
    assert verifier.verdict().tree_root == reference.root().hex()


def test_the_leaves_waiting_for_the_tree_are_bounded() -> None:
    """However far apart the tree is read (a ledger with one checkpoint far on, or none kept
    back), at most PENDING_LEAVES entry hashes wait: verification stays in constant memory."""
    verifier = ChainVerifier(tree_leaves=None)
    reference = CompactRange()
    prev = GENESIS_PREV_HASH
    for position in range(1, 3 * PENDING_LEAVES + 8):
        canonical = b"%d" % position
        digest = chain_hash(prev, canonical)
        assert verifier.accept(position, prev, digest, canonical)
        assert len(verifier._pending) < PENDING_LEAVES
        reference.append(leaf_hash(digest))
        prev = digest
    assert verifier.verdict().tree_root == reference.root().hex()


_OFFSETS = st.integers(min_value=-1439, max_value=1439).map(lambda m: timedelta(minutes=m))
_MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    occurred=_MOMENTS,
    offset=_OFFSETS,
    stored=st.one_of(_MOMENTS, st.none()),
    same=st.booleans(),
    shift_us=st.integers(min_value=-2, max_value=2),
)
def test_the_scans_binary_times_and_text_id_decide_as_the_typed_columns(
    occurred: datetime, offset: timedelta, stored: datetime | None, same: bool, shift_us: int
) -> None:
    """#12: a row as the scan reads it (times in PostgreSQL's binary form, the id as text)
    is taken or left by the fast path exactly as the same row with asyncpg's datetimes and
    UUID, for an event time in any offset and a stored time equal to it, a microsecond or
    two apart, or anything else; the full checks see the same typed row."""
    table = rows(3)
    local = occurred.astimezone(timezone(offset))
    event = table[1][4]
    event["occurred_at"] = local.isoformat()
    table[1][12] = (occurred + timedelta(microseconds=shift_us)) if same else stored
    table[1][3] = entry_canonical_bytes(2, event, AT)
    table[1][2] = chain_hash(table[0][2], table[1][3])
    table[2][1] = table[1][2]
    table[2][2] = chain_hash(table[1][2], table[2][3])
    assert stored_entry(scanned(table[1])) == stored_entry(table[1])
    for form in (table, bytes_only(table)):  # the event in its column, or in the bytes only
        fast, full = verdicts(form)
        assert fast == full
        assert fast.ok == (table[1][12] == occurred)


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 300),
    before=st.integers(0, 200),
    batches=st.lists(st.integers(0, 150), max_size=4),
)
def test_a_segments_range_grown_in_batches_is_the_range_grown_leaf_by_leaf(
    start: int, before: int, batches: list[int]
) -> None:
    """A segment's verifier folds its entry hashes into its aligned subtrees when they are
    read (#12): at any start, after any leaves one by one, the same subtrees."""
    hashes = [chain_hash(GENESIS_PREV_HASH, b"%d" % i) for i in range(before + sum(batches))]
    one_by_one = AlignedRange(start)
    for value in hashes:
        one_by_one.append(leaf_hash(value))
    batched = AlignedRange(start)
    for value in hashes[:before]:
        batched.append(leaf_hash(value))
    done = before
    for count in batches:
        grow_by_leaves(batched, hashes[done : done + count])
        done += count
    assert (batched.end, batched.nodes) == (one_by_one.end, one_by_one.nodes)


def test_a_subtree_starts_only_where_its_leaves_are_aligned() -> None:
    node = leaf_hash(bytes(32))
    with pytest.raises(ValueError, match="cannot start at leaf 3"):
        AlignedRange(3).append_subtree(1, node)
    aligned = AlignedRange(2)
    aligned.append_subtree(1, node)
    assert (aligned.end, aligned.nodes) == (4, ((1, node),))

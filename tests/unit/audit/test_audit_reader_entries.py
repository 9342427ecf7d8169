"""The trail readers' page of rows turned into entries at once (#12, Round 18) is what the
reader made of each row before: ``stored_entry`` of the row's values, then the entry marked
``unwritten``, or else its ``pruned_at`` read as a time.

``reader_entries`` unpacks each row once and formats an append time once per distinct stored
instant of the page; any difference from that reference, an entry, a field, or an error one
raises and the other does not, fails here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_audit.domain.canonical import entry_canonical_bytes
from branchline_audit.domain.records import REDACTION_KEY, RETENTION_REASON
from branchline_audit.domain.verification import (
    ROW_FIELDS,
    StoredEntry,
    pg_time,
    reader_entries,
    stored_entry,
)

pytestmark = pytest.mark.unit

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_INFINITY = 0x7FFF_FFFF_FFFF_FFFF


def reference(row: Sequence[Any]) -> StoredEntry:
    """The reader's entry of one row until Round 18 (``adapters/ledger.py`` ``_stored``)."""
    values = dict(zip((*ROW_FIELDS, "unwritten"), row, strict=True))
    stored = stored_entry([values[name] for name in ROW_FIELDS])
    if values["unwritten"] is not None:
        return replace(stored, unwritten=values["unwritten"])
    if type(stored.pruned_at) is bytes:
        return replace(stored, pruned_at=pg_time(stored.pruned_at))
    return stored


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as error:
        return "error", type(error)


def sent(microseconds: int) -> bytes:
    return microseconds.to_bytes(8, "big", signed=True)


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


# Few distinct instants, so that a page repeats them (the cache's hits) and neighbours differ
# by a microsecond (a cache keyed too loosely); the extremes a tampered row may hold.
_BASE = micros(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
BINARY_TIMES = st.one_of(
    st.sampled_from(
        [
            sent(_BASE),
            sent(_BASE + 1),
            sent(_BASE - 1),
            sent(0),
            sent(_INFINITY),
            sent(-_INFINITY - 1),
            sent(micros(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) + 1),
            sent(micros(datetime(1, 1, 1, tzinfo=UTC)) - 1),
        ]
    ),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(sent),
)
TIMES = st.one_of(
    BINARY_TIMES,
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),  # naive: not a time an append writes
)
EVENTS = st.one_of(
    st.fixed_dictionaries(
        {"event_id": st.uuids().map(str), "type": st.sampled_from(["visit.arrived", "x"])},
        optional={
            "client_id": st.sampled_from(["C-1", "C-2"]),
            "data": st.dictionaries(
                st.text(max_size=3), st.integers(-(2**53) + 1, 2**53 - 1), max_size=2
            ),
            REDACTION_KEY: st.just({"reason": RETENTION_REASON}),
        },
    ),
    st.just({REDACTION_KEY: {"reason": RETENTION_REASON}}),
)


@st.composite
def rows(draw: st.DrawFn) -> tuple[Any, ...]:
    position = draw(st.integers(min_value=1, max_value=2**53 - 1))
    event = draw(EVENTS)
    appended_at = draw(TIMES)
    stored_as = draw(st.sampled_from(["bytes", "text", "object", "none", "tampered"]))
    canonical: bytes | None = None
    column: Any = None
    if stored_as == "bytes":
        canonical = entry_canonical_bytes(position, event, "2026-11-22T09:00:00.000000Z")
    elif stored_as == "tampered":
        canonical = draw(st.binary(max_size=40))
    elif stored_as == "text":
        column = draw(st.sampled_from(["not json", "[1]", '{"a": 1}', '{"type": "x"}']))
    elif stored_as == "object":
        column = event
    event_id = draw(st.one_of(st.uuids(), st.uuids().map(str)))
    return (
        position,
        draw(st.binary(min_size=32, max_size=32)),
        draw(st.binary(min_size=32, max_size=32)),
        canonical,
        column,
        appended_at,
        draw(st.one_of(st.none(), BINARY_TIMES)),
        event_id,
        event.get("type", "x"),
        draw(st.sampled_from([None, "C-1"])),
        draw(st.sampled_from([None, "A-1"])),
        draw(st.sampled_from([None, "B-1"])),
        draw(st.one_of(st.none(), BINARY_TIMES, st.datetimes(timezones=st.just(UTC)))),
        draw(st.sampled_from([None, "appended_at holds 'infinity'"])),
    )


@given(st.lists(rows(), max_size=12))
@settings(max_examples=200)
def test_a_page_s_entries_are_the_reference_s(page: list[tuple[Any, ...]]) -> None:
    assert outcome(lambda: reader_entries(page)) == outcome(
        lambda: [reference(row) for row in page]
    )


def test_one_instant_s_text_serves_its_page_and_neighbours_keep_theirs() -> None:
    event = {"event_id": str(uuid.UUID(int=1)), "type": "visit.arrived"}
    canonical = entry_canonical_bytes(1, event, "2026-11-22T09:00:00.000000Z")
    times = [sent(_BASE), sent(_BASE + 1), sent(_BASE), sent(_INFINITY), sent(_BASE + 1)]
    page = [
        (
            1,
            bytes(32),
            bytes(32),
            canonical,
            None,
            t,
            None,
            uuid.UUID(int=1),
            "visit.arrived",
            None,
            None,
            None,
            sent(_BASE),
            None,
        )
        for t in times
    ]
    entries = reader_entries(page)
    assert [e.entry.appended_at for e in entries[:3]] == [
        "2026-11-22T09:00:00.000000Z",
        "2026-11-22T09:00:00.000001Z",
        "2026-11-22T09:00:00.000000Z",
    ]
    assert entries[3].entry.appended_at.startswith("not a time an append writes")
    assert entries == [reference(row) for row in page]

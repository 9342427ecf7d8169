"""What every reader of the ledger checks of an entry it serves (``ServedCheck``, D-11, #12):
a sound ledger's entries of every kind (the event in the bytes only, in the bytes and its
column, in its column only, pruned) are served as they are; an entry whose stored columns
differ from what its hash covers is refused, naming what differs as verify does; and the
fast path proves exactly what the full check (``_served_problem``) accepts."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    ChainEntry,
    chain_hash,
    entry_canonical_bytes,
    format_appended_at,
)
from branchline_audit.domain.records import index_columns, pruned_marker
from branchline_audit.domain.verification import (
    AlteredEntry,
    ServedCheck,
    StoredEntry,
    _served_problem,
    refuse_altered,
    sound_before_altered,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
KINDS = ("bytes", "both", "column", "pruned")


def envelope(n: int, **changes: Any) -> dict[str, Any]:
    occurred = (T0 + timedelta(minutes=n % 100_000)).isoformat().replace("+00:00", "Z")
    return {
        "event_id": str(uuid.UUID(int=n + 1)),
        "type": "visit.arrived",
        "occurred_at": occurred,
        "actor": {"id": "staff-17", "role": "teller"},
        "client_id": "C-1",
        "branch_id": "BR-001",
        "data": {"visit_id": f"V-{n}", "note": "n", "count": n},
        **changes,
    }


def stored(
    position: int, prev: bytes, kind: str = "bytes", event: dict[str, Any] | None = None
) -> StoredEntry:
    """The entry a reader reads of a sound row of ``kind``."""
    event = envelope(position) if event is None else event
    appended_at = format_appended_at(T0)
    canonical = entry_canonical_bytes(position, event, appended_at)
    hash_ = chain_hash(prev, canonical)
    pruned_at = None
    if kind == "pruned":
        event, pruned_at = pruned_marker(event, pruned_at=T0), T0
    return StoredEntry(
        entry=ChainEntry(
            position=position,
            event=event,
            appended_at=appended_at,
            prev_hash=prev,
            hash=hash_,
            pruned=kind == "pruned",
            canonical=canonical if kind in ("bytes", "both") else None,
        ),
        columns=index_columns(event),
        pruned_at=pruned_at,
    )


def chain(kinds: list[str]) -> list[StoredEntry]:
    entries, prev = [], GENESIS_PREV_HASH
    for position, kind in enumerate(kinds, start=1):
        entries.append(stored(position, prev, kind))
        prev = entries[-1].entry.hash
    return entries


def refusal(entries: list[StoredEntry]) -> AlteredEntry:
    with pytest.raises(AlteredEntry) as refused:
        refuse_altered(entries)
    return refused.value


@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=12))
def test_a_sound_ledger_of_every_kind_is_served(kinds: list[str]) -> None:
    entries = chain(kinds)
    refuse_altered(entries)
    check = ServedCheck()  # one read's pages, split anywhere
    refuse_altered(entries[:3], check)
    refuse_altered(entries[3:], check)


def test_a_non_ascii_event_is_served_through_the_full_check() -> None:
    (entry,) = [stored(1, GENESIS_PREV_HASH, event=envelope(1, data={"note": "王 ☃"}))]
    assert ServedCheck()._proven(entry) is False  # the fast path proves ASCII only
    refuse_altered([entry])


def _entry_at(entries: list[StoredEntry], position: int, **changes: Any) -> list[StoredEntry]:
    s = entries[position - 1]
    entry_changes = {k: v for k, v in changes.items() if k in ChainEntry.__slots__}
    column_changes = {k: v for k, v in changes.items() if k not in ChainEntry.__slots__}
    altered = replace(
        s,
        entry=replace(s.entry, **entry_changes),
        columns=replace(s.columns, **column_changes),
    )
    return [*entries[: position - 1], altered, *entries[position:]]


def _later(text: str, **delta: int) -> str:
    moment = datetime.fromisoformat(text) + timedelta(**delta)
    return format_appended_at(moment)


@pytest.mark.parametrize("kind", ["bytes", "both"])
def test_a_plausible_alteration_is_refused_by_name(kind: str) -> None:
    entries = chain([kind] * 4)
    e = entries[1].entry
    canonical = e.canonical
    assert canonical is not None
    cases = {
        "appended_at": {"appended_at": _later(e.appended_at, days=1)},
        "year 5": {"appended_at": "0005-11-22T09:00:00.000000Z"},
        "occurred_at": {"occurred_at": entries[1].columns.occurred_at + timedelta(days=1)},
        "occurred_at in year 5": {"occurred_at": datetime(5, 1, 1, tzinfo=UTC)},
        "event_type": {"event_type": "complaint.received"},
        "client_id": {"client_id": "C-2"},
        "body": {"canonical": canonical.replace(b'"note":"n"', b'"note":"m"')},
        "hash": {"hash": bytes(32)},
    }
    expected = {
        "appended_at": "column appended_at does not match",
        "year 5": "column appended_at does not match",
        "occurred_at": "column occurred_at does not match",
        "occurred_at in year 5": "column occurred_at does not match",
        "event_type": "column event_type does not match",
        "client_id": "column client_id does not match",
        "body": "hash does not match",
        "hash": "hash does not match",
    }
    if kind == "both":  # the event column, as served, differs from the bytes
        event = dict(e.event, data={**e.event["data"], "count": 2.0})
        cases["event column"] = {"event": event}
        expected["event column"] = "column event does not match"
    for name, changes in cases.items():
        refused = refusal(_entry_at(entries, 2, **changes))
        assert refused.position == 2, name
        assert expected[name] in refused.detail, (name, refused.detail)
        assert "D-11" in refused.detail


def test_consecutive_entries_must_link_and_position_one_follows_the_genesis() -> None:
    entries = chain(["bytes"] * 4)
    # Entry 2 rewritten with its own hash recomputed: entry 3 names it.
    e = entries[1].entry
    body = envelope(2, data={"visit_id": "V-2", "note": "m", "count": 2})
    rewritten = stored(2, e.prev_hash, event=body)
    altered = [entries[0], rewritten, *entries[2:]]
    refused = refusal(altered)
    assert refused.position == 3
    assert "prev_hash does not equal the hash of position 2" in refused.detail
    # Across pages of one read, too; the later entry alone cannot tell.
    check = ServedCheck()
    refuse_altered(altered[:2], check)
    with pytest.raises(AlteredEntry):
        refuse_altered(altered[2:], check)
    refuse_altered(altered[2:])
    # Position 1's link is the genesis.
    first = stored(1, b"\x01" * 32)
    assert "prev_hash does not equal the hash of position 0" in refusal([first]).detail


def test_only_the_altered_entry_is_named_in_a_pass_that_goes_on() -> None:
    """Retention skips altered candidates and goes on: the next entry's link is not held
    against it (verify's resync), so only the altered entry is named."""
    entries = _entry_at(chain(["bytes"] * 4), 2, hash=bytes(32))
    check = ServedCheck()
    named = [a.position for s in entries if (a := check.altered(s)) is not None]
    assert named == [2]


_SHIFTS = st.sampled_from(
    ["none", "appended_at", "occurred_at", "event_type", "body", "hash", "prev", "event"]
)


@settings(max_examples=300)
@given(
    st.sampled_from(KINDS),
    _SHIFTS,
    st.integers(min_value=1, max_value=2**53 - 1),
    st.dictionaries(
        st.text(max_size=4),
        st.one_of(st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=4), st.booleans()),
        max_size=3,
    ),
)
def test_the_fast_path_proves_only_what_the_full_check_accepts(
    kind: str, shift: str, position: int, data: dict[str, Any]
) -> None:
    prev = GENESIS_PREV_HASH if position == 1 else b"\x02" * 32
    entry = stored(position, prev, kind, envelope(position, data=data))
    e = entry.entry
    if shift == "appended_at":
        entry = replace(entry, entry=replace(e, appended_at=_later(e.appended_at, seconds=1)))
    elif shift == "occurred_at":
        entry = replace(entry, columns=replace(entry.columns, occurred_at=T0))
    elif shift == "event_type":
        entry = replace(entry, columns=replace(entry.columns, event_type="x.y"))
    elif shift == "body" and e.canonical is not None:
        entry = replace(entry, entry=replace(e, canonical=e.canonical.replace(b"}", b" }", 1)))
    elif shift == "hash":
        entry = replace(entry, entry=replace(e, hash=bytes(32)))
    elif shift == "prev" and position > 1:
        entry = replace(entry, entry=replace(e, prev_hash=b"\x03" * 32))
    elif shift == "event" and kind == "both":
        entry = replace(entry, entry=replace(e, event={**e.event, "data": {"x": True}}))
    check = ServedCheck()
    check._last = (position - 1, prev)
    altered = check.altered(entry)
    full = _served_problem(entry)
    link_broken = shift == "prev" and position > 1
    assert (altered is None) == (full is None and not link_broken), (altered, full)
    if check._proven(entry):
        assert full is None


def _with_neighbours(entries: list[StoredEntry], index: int) -> StoredEntry:
    """``entries[index]`` as a reader holding it alone reads it: with the hash before it and
    the ``prev_hash`` after it (#12)."""
    before = entries[index - 1].entry.hash if index > 0 else None
    after = entries[index + 1].entry.prev_hash if index + 1 < len(entries) else None
    return replace(entries[index], before_hash=before, after_prev=after)


@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=8), st.data())
def test_a_sound_entry_with_its_neighbours_links_is_served(kinds: list[str], data: Any) -> None:
    entries = chain(kinds)
    index = data.draw(st.integers(min_value=0, max_value=len(entries) - 1))
    refuse_altered([_with_neighbours(entries, index)])


def test_an_entry_rewritten_with_its_hash_is_refused_alone_by_the_link_after_it() -> None:
    """Alone, first or last on a page (#12): its own hash holds, the entry after it does not
    link to it; named at that position, as verify and a reader holding both name it."""
    entries = chain(["bytes"] * 4)
    body = envelope(2, data={"visit_id": "V-2", "note": "m", "count": 2})
    rewritten = [entries[0], stored(2, entries[0].entry.hash, event=body), *entries[2:]]
    for index in (1, 2):  # the rewritten entry alone, the one after it alone
        refused = refusal([_with_neighbours(rewritten, index)])
        assert refused.position == 3
        assert "prev_hash does not equal the hash of position 2" in refused.detail
    # The entries further away hold.
    refuse_altered([_with_neighbours(rewritten, 0)])
    refuse_altered([_with_neighbours(rewritten, 3)])
    # A page's first entry (the check holds nothing before it) and last.
    refusal([_with_neighbours(rewritten, 1), rewritten[2]])
    refusal([rewritten[0], _with_neighbours(rewritten, 1)])


def test_a_stream_keeps_every_sound_entry_before_an_altered_one() -> None:
    entries = _entry_at(chain(["bytes"] * 5), 4, hash=bytes(32))
    sound, altered = sound_before_altered(entries, ServedCheck())
    assert [s.entry.position for s in sound] == [1, 2, 3]
    assert altered is not None
    assert altered.position == 4
    whole = chain(["bytes"] * 3)
    assert sound_before_altered(whole, ServedCheck()) == (whole, None)

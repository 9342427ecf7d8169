"""Verifying the ledger in segments (#12) comes to the sequential verdict, mark for mark.

Each segment is verified apart (:class:`SegmentAuditor`, its result through pickle as from a
process) and joined in order (:meth:`LedgerAuditor.joins`, :meth:`LedgerAuditor.absorb`); a
segment that does not join has its rows fed to the joining auditor. Every tamper of the fast
path's tests, at every position around the segments' boundaries, with and without
checkpoints, gives the verdict of one auditor fed every row.
"""

from __future__ import annotations

import itertools
import pickle
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from tests.unit.audit.test_audit_fast_verify import (
    REHASHED_BYTES,
    T0,
    TAMPERS,
    _rehashed,
    bytes_only,
    rows,
    scanned,
)

from branchline_audit.domain.canonical import stored_event
from branchline_audit.domain.merkle import AlignedRange, CompactRange, leaf_hash
from branchline_audit.domain.records import pruned_marker
from branchline_audit.domain.verification import (
    LedgerAuditor,
    LedgerVerdict,
    Segment,
    SegmentAuditor,
    StoredCheckpoint,
    split_ledger,
)

pytestmark = pytest.mark.unit

SIZE = 24
PARTS = (2, 3, 4, 7)

_IMMUTABLE = (str, bytes, int, float, type(None), datetime, uuid.UUID)


def fresh(value: Any) -> Any:
    """``value`` (a table, a row, a cell) with new lists and dicts all the way down, the
    immutable cells a row holds shared: the inputs ``copy.deepcopy`` built, which an auditor
    may alter (an event's dict) without altering the test's table, at a fraction of its cost
    (#12: deepcopy was about half this file's time). Anything else is refused, not shared."""
    if type(value) is list:
        return [fresh(v) for v in value]
    if type(value) is dict:
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, _IMMUTABLE):
        return value
    raise TypeError(f"fresh: a {type(value).__name__} is neither copied nor immutable")


def checkpoints_of(table: list[list[Any]], sizes: tuple[int, ...]) -> list[StoredCheckpoint]:
    """Checkpoints over the good ``table`` at ``sizes`` (roots as a signer computed them)."""
    out = []
    for size in sizes:
        tree = CompactRange()
        tree.extend(leaf_hash(row[2]) for row in table[:size])
        out.append(StoredCheckpoint(tree_size=size, root_hash=tree.root(), note=""))
    return out


def sequential(table: list[list[Any]], checkpoints: list[StoredCheckpoint]) -> LedgerVerdict:
    """One auditor fed every row, as the database orders them by position."""
    auditor = LedgerAuditor(checkpoints, verifier=None, origin="")
    for row in sorted(fresh(table), key=lambda r: r[0]):
        auditor.feed_row(row)
    return auditor.verdict()


def segmented(
    table: list[list[Any]], checkpoints: list[StoredCheckpoint], parts: int
) -> tuple[LedgerVerdict, list[Segment]]:
    """The verdict as ``verify_ledger`` joins segments (rows read as the database orders them
    by position), and the segments that did not join."""
    ordered = sorted(fresh(table), key=lambda r: r[0])
    size = max((r[0] for r in ordered), default=0)  # ledger.size(): the largest position
    auditor = LedgerAuditor(checkpoints, verifier=None, origin="")
    sizes = frozenset(c.tree_size for c in checkpoints)
    refed: list[Segment] = []
    for segment in split_ledger(size, parts):
        mine = [
            r
            for r in ordered
            if r[0] > segment.low and (segment.high is None or r[0] <= segment.high)
        ]
        result = pickle.loads(pickle.dumps(apart_result(segment, sizes, mine)))
        if auditor.joins(result):
            auditor.absorb(result)
        else:
            refed.append(segment)
            for row in mine:
                auditor.feed_row(row)
    return auditor.verdict(), refed


def apart_result(segment: Segment, sizes: frozenset[int], mine: list[list[Any]]) -> Any:
    """A segment's result as its process finds it, its rows fed a page at a time
    (``feed_rows``, in pages of one row, of three and of the rest, as the scan feeds them,
    #12): it must be the result of its rows fed one by one (``feed_row``)."""
    one_by_one = SegmentAuditor(segment, sizes)
    for row in fresh(mine):
        one_by_one.feed_row(row)
    paged = SegmentAuditor(segment, sizes)
    rows = fresh(mine)
    paged.feed_rows([])
    paged.feed_rows(rows[:1])
    paged.feed_rows(iter(rows[1:4]))
    paged.feed_rows(rows[4:])
    assert paged.result() == one_by_one.result()
    return paged.result()


def assert_same(
    table: list[list[Any]], checkpoints: list[StoredCheckpoint] | None = None
) -> LedgerVerdict:
    expected = sequential(table, checkpoints or [])
    as_scanned = [scanned(row) for row in fresh(table)]  # as the scan reads them
    assert sequential(as_scanned, checkpoints or []) == expected
    for parts in PARTS:
        verdict, _ = segmented(table, checkpoints or [], parts)
        assert verdict == expected, parts
        verdict, _ = segmented(as_scanned, checkpoints or [], parts)
        assert verdict == expected, ("scanned", parts)
    return expected


def boundary_positions() -> list[int]:
    """Every position at or beside a boundary of any split used here."""
    near: set[int] = {1, SIZE}
    for parts in PARTS:
        for segment in split_ledger(SIZE, parts)[1:]:
            near.update({segment.low - 1, segment.low, segment.low + 1, segment.low + 2})
    return sorted(p for p in near if 1 <= p <= SIZE)


def test_the_ledger_is_split_into_ranges_that_cover_it_the_last_open() -> None:
    assert split_ledger(10, 3) == [Segment(0, 3), Segment(3, 6), Segment(6, None)]
    assert split_ledger(2, 4) == [Segment(0, 1), Segment(1, None)]
    assert split_ledger(0, 4) == [Segment(0, None)]
    for size in range(1, 40):
        for parts in range(1, 9):
            segments = split_ledger(size, parts)
            assert segments[0].low == 0
            assert segments[-1].high is None
            for left, right in itertools.pairwise(segments):
                assert left.high == right.low
                assert left.low < right.low


@pytest.mark.parametrize("form", ["bytes only", "event column"])
def test_a_good_ledger_joins_every_segment_without_feeding_a_row_again(form: str) -> None:
    table = rows(SIZE) if form == "event column" else bytes_only(rows(SIZE))
    checkpoints = checkpoints_of(table, (5, 12, SIZE))
    expected = sequential(table, checkpoints)
    assert expected.ok
    assert expected.checkpoints_checked == 3
    for parts in PARTS:
        verdict, refed = segmented(table, checkpoints, parts)
        assert verdict == expected
        assert refed == []


@pytest.mark.parametrize("with_checkpoints", [False, True], ids=["no checkpoint", "checkpoints"])
@pytest.mark.parametrize("column", sorted(TAMPERS))
def test_a_tampered_column_anywhere_near_a_boundary_gets_the_sequential_verdict(
    column: str, with_checkpoints: bool
) -> None:
    for position in boundary_positions():
        good = rows(SIZE)
        checkpoints = checkpoints_of(good, (6, 12, SIZE)) if with_checkpoints else []
        # Rows storing the event once, but where the tamper is to the event column.
        table = good if column.startswith("event") else bytes_only(good)
        TAMPERS[column](table[position - 1])
        verdict = assert_same(table, checkpoints)
        assert not verdict.ok, (column, position)
        assert verdict.first_bad_position == position, (column, position)


Change = Callable[[list[list[Any]]], list[list[Any]]]


def _deleted(position: int) -> Change:
    return lambda t: [r for r in t if r[0] != position]


def _swapped(first: int, second: int) -> Change:
    def change(t: list[list[Any]]) -> list[list[Any]]:
        t[first - 1][0], t[second - 1][0] = second, first
        return t

    return change


def _set(position: int, index: int, value: Callable[[Any], Any]) -> Change:
    def change(t: list[list[Any]]) -> list[list[Any]]:
        t[position - 1][index] = value(t[position - 1][index])
        return t

    return change


def _rehash_from(position: int, alter: Callable[[bytes], bytes]) -> Change:
    def change(t: list[list[Any]]) -> list[list[Any]]:
        t[position - 1][3] = alter(t[position - 1][3])
        _rehashed(t, position)
        return t

    return change


def _pruned(position: int) -> Change:
    """The event replaced by its prune marker behind the ledger's back (no audit.pruned
    entry names it), bytes gone as retention leaves them."""

    def change(t: list[list[Any]]) -> list[list[Any]]:
        row = t[position - 1]
        row[4] = pruned_marker(stored_event(row[3], position), pruned_at=T0)
        row[3] = None
        row[6] = T0
        return t

    return change


def changes() -> dict[str, Change]:
    out: dict[str, Change] = {}
    for p in boundary_positions():
        out[f"deleted {p}"] = _deleted(p)
        out[f"prev_hash {p} short"] = _set(p, 1, lambda v: v[:31])
        out[f"hash {p} short"] = _set(p, 2, lambda v: v[:31])
        out[f"hash {p} and next prev_hash"] = _set(p, 2, lambda v: bytes(32))
        out[f"pruned {p}"] = _pruned(p)
        out[f"rehashed {p}"] = _rehash_from(p, REHASHED_BYTES["whitespace"])
        if p < SIZE:
            out[f"swapped {p} {p + 1}"] = _swapped(p, p + 1)
            out[f"deleted {p} {p + 1}"] = lambda t, p=p: [r for r in t if r[0] not in (p, p + 1)]
    out["moved past the end"] = _set(9, 0, lambda v: v + 1000)
    out["deleted at the end"] = lambda t: t[:-3]
    out["every row bad"] = lambda t: [[*r[:2], bytes(32), *r[3:]] for r in t]
    return out


CHANGES = changes()


@pytest.mark.parametrize("with_checkpoints", [False, True], ids=["no checkpoint", "checkpoints"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_links_positions_prunes_and_rewrites_at_any_boundary_get_the_sequential_verdict(
    change: str, with_checkpoints: bool
) -> None:
    good = bytes_only(rows(SIZE))
    checkpoints = checkpoints_of(good, (6, 12, SIZE)) if with_checkpoints else []
    verdict = assert_same(CHANGES[change](good), checkpoints)
    # Entries removed at the end leave a shorter good chain: only a checkpoint sees that.
    assert not verdict.ok or (not checkpoints and change in END_REMOVED), change


END_REMOVED = {f"deleted {SIZE}", f"deleted {SIZE - 1} {SIZE}", "deleted at the end"}


def test_a_tamper_at_a_boundary_has_that_segment_fed_again_and_only_it() -> None:
    good = bytes_only(rows(SIZE))
    segments = split_ledger(SIZE, 3)  # (0, 8], (8, 16], (16, -)
    table = CHANGES["deleted 8"](fresh(good))
    verdict, refed = segmented(table, [], 3)
    assert verdict == sequential(table, [])
    assert verdict.first_bad_position == 8
    assert refed == [segments[1]]
    table = _set(17, 1, lambda v: bytes(32))(fresh(good))  # the link at 16 | 17
    verdict, refed = segmented(table, [], 3)
    assert verdict == sequential(table, [])
    assert verdict.first_bad_position == 17
    assert refed == [segments[2]]


def test_more_bad_marks_than_a_verdict_lists_are_counted_as_in_one_pass() -> None:
    """The verdict lists the first 1,000 bad positions and counts all; the marks of the
    segments are replayed in order, so the list and the count are the same."""
    good = bytes_only(rows(1100))
    table = [[*r[:2], bytes(32), *r[3:]] for r in good]
    table[5][7] = table[6][7]  # a column mark too, on one row
    expected = sequential(table, [])
    assert expected.bad_count > 1000
    assert len(expected.bad_positions) == 1000
    for parts in (2, 5):
        verdict, _ = segmented(table, [], parts)
        assert verdict == expected


def test_a_rewrite_found_only_by_a_checkpoint_is_located_as_in_one_pass() -> None:
    for position in (3, 8, 9, 17):
        good = bytes_only(rows(SIZE))
        checkpoints = checkpoints_of(good, (4, 8, 16, SIZE))
        table = _rehash_from(position, REHASHED_BYTES["whitespace"])(good)
        verdict = assert_same(table, checkpoints)
        assert verdict.bad_checkpoint is not None, position


def test_a_segments_aligned_subtrees_join_a_tree_as_its_leaves_would() -> None:
    """The tree of leaves 0..start joined with the subtrees of leaves start..end (formed
    alone, aligned from ``start``) is the tree of all leaves, at every split."""
    leaves = [leaf_hash(bytes([i % 256, i // 256]) * 16) for i in range(70)]
    for start in range(40):
        for end in range(start, 70):
            apart = AlignedRange(start)
            for leaf in leaves[start:end]:
                apart.append(leaf)
            joined = CompactRange()
            joined.extend(leaves[:start])
            for level, root in apart.nodes:
                joined.append_subtree(level, root)
            whole = CompactRange()
            whole.extend(leaves[:end])
            assert (joined.size, joined.hashes) == (whole.size, whole.hashes), (start, end)
    with pytest.raises(ValueError, match="cannot follow"):
        CompactRange.restore(1, [leaves[0]]).append_subtree(1, leaves[1])


def test_a_segments_page_is_checked_in_the_one_pass_loop_without_a_call_per_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verifying process feeds its pages through the one pass's loop (#12): no
    ``feed_row`` per row, and good rows by the fast path, never the full checks; its result
    is the one of its rows fed one by one, checkpoints' rows and end state included."""
    table = bytes_only(rows(SIZE))
    segment, sizes = Segment(8, None), frozenset({12, 20, SIZE})
    one_by_one = SegmentAuditor(segment, sizes)
    for row in fresh(table[8:]):
        one_by_one.feed_row(row)
    paged = SegmentAuditor(segment, sizes)
    monkeypatch.setattr(paged, "feed_row", lambda _: pytest.fail("a call per row"))
    monkeypatch.setattr(paged, "feed", lambda _: pytest.fail("full checks used"))
    paged.feed_rows(table[8:13])
    paged.feed_rows(table[13:])
    assert paged.result() == one_by_one.result()
    assert paged.result().rows == SIZE - 8
    assert [row for row, _, _ in paged.result().events] == [3, 11, 15]


def test_fresh_builds_the_inputs_deepcopy_built_with_nothing_mutable_shared() -> None:
    table = rows(4)
    table += [scanned(r) for r in rows(2)] + bytes_only(rows(2))
    _pruned(1)(table)
    copied = fresh(table)
    assert copied == table
    for mine, theirs in zip(copied, table, strict=True):
        assert mine is not theirs
        if isinstance(mine[4], dict):
            mine[4]["altered"] = True
            assert "altered" not in theirs[4]
    with pytest.raises(TypeError, match="bytearray"):
        fresh([[bytearray(b"x")]])

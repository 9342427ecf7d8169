"""``StreamWalk``: a stream's order judged from its highest version down, two apply sequences
carried however long the stream (pure, #12): the verdicts of judging the stream whole in the
order applied, which is how ``compare`` judged it before (the oracle below is that code)."""

from __future__ import annotations

import itertools

import pytest

from branchline_shared.reconcile.compare import LATE, OUT_OF_ORDER, StreamWalk

pytestmark = pytest.mark.unit


def judged_whole(
    applied: dict[int, tuple[int, bool]], *, late_is_record: bool
) -> dict[int, str | None]:
    """version -> (apply sequence, put in order): each version's verdict, walking the stream
    in the order applied (compare's ``_applied_late`` before #12)."""
    verdicts: dict[int, str | None] = {}
    highest = highest_unordered = 0
    for _seq, version in sorted((seq, version) for version, (seq, _) in applied.items()):
        ordered = applied[version][1]
        verdicts[version] = None
        if version < highest:
            if late_is_record or (ordered and version > highest_unordered):
                verdicts[version] = LATE
            else:
                verdicts[version] = OUT_OF_ORDER
        highest = max(highest, version)
        if not ordered:
            highest_unordered = max(highest_unordered, version)
    return verdicts


def walked(applied: dict[int, tuple[int, bool]], *, late_is_record: bool) -> dict[int, str | None]:
    walk = StreamWalk(late_is_record=late_is_record)
    return {
        version: walk.judge(applied[version][0], ordered=applied[version][1])
        for version in sorted(applied, reverse=True)
    }


@pytest.mark.parametrize("late_is_record", [False, True])
def test_every_order_of_applying_four_versions_gets_the_whole_streams_verdicts(
    late_is_record: bool,
) -> None:
    """Every order of applying versions 1-4, every choice of which were put in order: the
    same verdict for each version as judging the stream whole in the order applied."""
    cases = 0
    for order in itertools.permutations(range(1, 5)):
        for flags in itertools.product([False, True], repeat=4):
            applied = {
                version: (seq, flags[version - 1]) for seq, version in enumerate(order, start=1)
            }
            assert walked(applied, late_is_record=late_is_record) == judged_whole(
                applied, late_is_record=late_is_record
            ), (order, flags)
            cases += 1
    assert cases == 24 * 16


def test_a_lower_version_applied_earlier_does_not_make_a_put_in_order_one_out_of_order() -> None:
    """Version 5 (put in order) applied first, then 2 (not), then 4 (put in order): both are
    late after 5; 2 is out of order (nothing put it in order); 4 only late: what was applied
    before it unordered (2) is a lower version. Version 3 was never applied: not judged."""
    applied = {5: (1, True), 2: (2, False), 4: (3, True)}
    assert walked(applied, late_is_record=False) == {5: None, 4: LATE, 2: OUT_OF_ORDER}
    assert walked(applied, late_is_record=False) == judged_whole(applied, late_is_record=False)
    assert walked(applied, late_is_record=True) == {5: None, 4: LATE, 2: LATE}


def test_a_long_stream_carries_two_sequences_whatever_its_length() -> None:
    """10,000 versions applied newest first: every one but the highest is out of order; in
    order: none. The walk holds the same three attributes from the first version to the last."""
    versions = 10_000
    newest_first = StreamWalk(late_is_record=False)
    verdicts = [newest_first.judge(versions - v + 1, ordered=False) for v in range(versions, 0, -1)]
    assert verdicts[0] is None
    assert set(verdicts[1:]) == {OUT_OF_ORDER}
    in_order = StreamWalk(late_is_record=False)
    assert {in_order.judge(v, ordered=False) for v in range(versions, 0, -1)} == {None}
    assert len(vars(newest_first)) == len(vars(in_order)) == 3

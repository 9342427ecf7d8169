"""Owed or not reached yet: the self-check's judgement by the consumer group's progress on
the broker (pure, #12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_shared.reconcile.progress import Copy, PartitionProgress, Verdict, judge

pytestmark = pytest.mark.unit

T = "intake.events"


def at(offset: int | None, partition: int | None = 0, topic: str = T) -> Copy:
    return Copy(topic, partition, offset)


def group(
    committed: int | None, *, start: int = 0, end: int = 1_000
) -> dict[tuple[str, int], PartitionProgress]:
    return {(T, 0): PartitionProgress(committed, start, end)}


def test_an_event_ahead_of_the_committed_offset_is_not_reached() -> None:
    assert judge([at(500)], group(committed=100)) is Verdict.NOT_REACHED
    assert judge([at(100)], group(committed=100)) is Verdict.NOT_REACHED  # the next it reads


def test_an_event_the_committed_offset_passed_is_owed() -> None:
    assert judge([at(99)], group(committed=100)) is Verdict.OWED


def test_a_group_that_never_committed_on_the_partition_reads_it_from_the_start() -> None:
    assert judge([at(0)], group(committed=None)) is Verdict.NOT_REACHED


def test_a_copy_ahead_holds_the_event_back_although_the_consumer_passed_an_earlier_one() -> None:
    # A re-queued copy on its way: re-queuing again would only add another.
    assert judge([at(10), at(500)], group(committed=100)) is Verdict.NOT_REACHED


def test_every_copy_passed_is_owed() -> None:
    assert judge([at(10), at(50)], group(committed=100)) is Verdict.OWED


@pytest.mark.parametrize(
    "copy",
    [
        at(None, None),  # not published yet
        at(None, 0),
        at(5, 3),  # a partition the broker did not report
        at(5, 0, topic="other"),
    ],
)
def test_what_the_broker_cannot_place_is_left_to_the_grace_period(copy: Copy) -> None:
    assert judge([copy], group(committed=1)) is Verdict.UNKNOWN


def test_a_copy_outside_the_log_the_broker_holds_is_left_to_the_grace_period() -> None:
    # Deleted by retention, or beyond the end of a log that was reset (the consumer will not
    # get it by reading on, so "not reached" would hold the repair back for good).
    assert judge([at(5)], group(committed=None, start=10, end=20)) is Verdict.UNKNOWN
    assert judge([at(25)], group(committed=3, start=0, end=20)) is Verdict.UNKNOWN


def test_an_unknown_copy_makes_passed_ones_wait_for_the_grace_period() -> None:
    assert judge([at(10), at(None, None)], group(committed=100)) is Verdict.UNKNOWN


def test_no_copy_is_unknown() -> None:
    assert judge([], group(committed=100)) is Verdict.UNKNOWN


@given(
    offset=st.integers(0, 10_000),
    committed=st.none() | st.integers(0, 10_000),
    start=st.integers(0, 10_000),
    length=st.integers(0, 10_000),
)
def test_owed_exactly_when_the_committed_offset_is_past_it(
    offset: int, committed: int | None, start: int, length: int
) -> None:
    verdict = judge([at(offset)], group(committed, start=start, end=start + length))
    passed = committed is not None and committed > offset
    assert (verdict is Verdict.OWED) == passed
    assert (verdict is Verdict.NOT_REACHED) == (not passed and start <= offset < start + length)

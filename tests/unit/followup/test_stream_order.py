"""A rebuild from the topics applies each stream's versions in order (#12): the pure order
(:mod:`branchline_followup.domain.stream_order`) and the rebuild's use of it on messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import orjson
import pytest
from pydantic import ValidationError

from branchline_followup.application.rebuild import TopicOrder, stream_place
from branchline_followup.domain.stream_order import StreamOrder, TooManyHeld
from branchline_shared.settings import BranchlineSettings


def arrive_all(order: StreamOrder[str], arrivals: list[tuple[str, int]]) -> list[str]:
    released: list[str] = []
    for stream, version in arrivals:
        released.extend(order.arrive(stream, version, f"{stream}{version}"))
    return released


def test_a_stream_in_order_passes_as_it_comes() -> None:
    order: StreamOrder[str] = StreamOrder()
    arrivals = [("p", 1), ("c", 1), ("p", 2), ("c", 2), ("p", 3)]
    assert arrive_all(order, arrivals) == ["p1", "c1", "p2", "c2", "p3"]
    assert order.held == 0


def test_a_late_version_is_released_before_the_later_ones_it_missed() -> None:
    # the re-queued copy of p2 comes after p3 and p4 on the topic: p2, p3, p4 applied in order
    order: StreamOrder[str] = StreamOrder()
    released = arrive_all(order, [("p", 1), ("p", 3), ("c", 1), ("p", 4), ("c", 2), ("p", 2)])
    assert released == ["p1", "c1", "c2", "p2", "p3", "p4"]
    assert order.held == 0
    assert order.rest() == []
    assert order.arrive("p", 5, "p5") == ["p5"]  # the gap closed: the stream goes on


def test_two_missing_versions_close_one_after_the_other() -> None:
    order: StreamOrder[str] = StreamOrder()
    assert arrive_all(order, [("s", 1), ("s", 3), ("s", 5), ("s", 2)]) == ["s1", "s2", "s3"]
    assert order.held == 1  # s5 waits for s4
    assert arrive_all(order, [("s", 6), ("s", 4)]) == ["s4", "s5", "s6"]
    assert order.held == 0


def test_an_older_copy_and_a_stream_first_seen_late_pass_as_they_come() -> None:
    # a re-published copy (dropped by id where applied); a topic whose start was cut is not
    # waited for
    order: StreamOrder[str] = StreamOrder()
    assert arrive_all(order, [("p", 1), ("p", 2), ("p", 1), ("q", 7), ("q", 8)]) == [
        "p1",
        "p2",
        "p1",
        "q7",
        "q8",
    ]


def test_what_never_closes_is_released_at_the_end_in_version_order() -> None:
    order: StreamOrder[str] = StreamOrder()
    assert arrive_all(order, [("p", 1), ("p", 4), ("s", 1), ("s", 3), ("p", 3), ("p", 3)]) == [
        "p1",
        "s1",
    ]
    assert order.held == 4
    assert order.rest() == ["p3", "p3", "p4", "s3"]
    assert order.held == 0
    assert order.arrive("p", 5, "p5") == ["p5"]  # remembered as released up to 4


def test_copies_while_a_gap_is_open_are_held_or_passed_by_version() -> None:
    order: StreamOrder[str] = StreamOrder()
    assert arrive_all(order, [("p", 2), ("p", 4), ("p", 1), ("p", 4), ("p", 3)]) == [
        "p2",
        "p1",
        "p3",
        "p4",
        "p4",
    ]


def test_a_forgotten_stream_is_taken_as_it_comes() -> None:
    order: StreamOrder[str] = StreamOrder(remembered=2)
    # p seen least recently once a and b came: forgotten, its p3 is not held
    assert arrive_all(order, [("p", 1), ("a", 1), ("p", 2), ("b", 1), ("c", 1), ("p", 4)]) == [
        "p1",
        "a1",
        "p2",
        "b1",
        "c1",
        "p4",
    ]
    # a stream seen again is remembered anew: c's gap is held
    assert arrive_all(order, [("c", 3), ("c", 2)]) == ["c2", "c3"]


def test_holding_more_than_the_bound_is_refused_with_the_stream_and_the_version() -> None:
    order: StreamOrder[str] = StreamOrder(max_held=2)
    arrive_all(order, [("p", 1), ("p", 3), ("p", 4)])
    with pytest.raises(TooManyHeld) as refused:
        order.arrive("p", 5, "p5")
    assert (refused.value.stream_id, refused.value.missing) == ("p", 2)
    assert "--from-stores" in str(refused.value)


def test_the_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        StreamOrder(remembered=0)


@dataclass(frozen=True)
class Message:
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    from_store: bool = False


def message(stream: str, version: int, *, from_store: bool = False) -> Message:
    value = orjson.dumps({"stream_id": stream, "stream_version": version, "type": "x"})
    return Message(value, from_store=from_store)


async def ordered(order: TopicOrder, messages: list[Message]) -> list[Message]:
    async def each() -> AsyncIterator[Message]:
        for one in messages:
            yield one

    return [m async for m in order.of(each())]


@pytest.mark.timeout(10)
def test_a_rebuilds_messages_are_put_in_order_across_its_phases() -> None:
    order = TopicOrder()
    p1, p2, p3, p4 = (message("product-P", v) for v in (1, 2, 3, 4))
    poison = Message(b"not json")
    assert asyncio.run(ordered(order, [p1, p3, poison])) == [p1, poison]
    # the catch-up brings the missing version: it comes first, then the held one
    assert asyncio.run(ordered(order, [p2, p4])) == [p2, p3, p4]
    assert order.rest() == []


@pytest.mark.timeout(10)
def test_store_messages_pass_as_they_come() -> None:
    order = TopicOrder()
    stored = [message("product-P", 1, from_store=True), message("product-P", 3, from_store=True)]
    assert asyncio.run(ordered(order, stored)) == stored


@pytest.mark.parametrize(
    ("value", "place"),
    [
        (b'{"stream_id":"client-1","stream_version":7}', ("client-1", 7)),
        (b'{"stream_id":"client-1","stream_version":true}', None),
        (b'{"stream_id":"client-1","stream_version":"7"}', None),
        (b'{"stream_id":1,"stream_version":7}', None),
        (b"[1, 2]", None),
        (b"{", None),
        (None, None),
    ],
)
def test_the_stream_place_is_read_only_from_an_envelope_that_has_one(
    value: bytes | None, place: tuple[str, int] | None
) -> None:
    assert stream_place(value) == place


@pytest.mark.parametrize(("max_held", "refused"), [(2, True), (3, False)])
def test_the_held_bound_is_the_settings_and_its_refusal_names_it(
    max_held: int, refused: bool
) -> None:
    # BRANCHLINE_FOLLOWUP_REBUILD_MAX_HELD (#12): a lower bound refuses a third held event, a
    # higher one holds it; the refusal says which setting to raise, or --from-stores
    settings = BranchlineSettings(followup_rebuild_max_held=max_held)
    order: StreamOrder[str] = StreamOrder(
        remembered=settings.followup_rebuild_remembered_streams,
        max_held=settings.followup_rebuild_max_held,
    )
    arrive_all(order, [("p", 1), ("p", 3), ("p", 4)])
    if not refused:
        assert order.arrive("p", 5, "p5") == []
        assert order.arrive("p", 2, "p2") == ["p2", "p3", "p4", "p5"]
        return
    with pytest.raises(TooManyHeld) as refusal:
        order.arrive("p", 5, "p5")
    assert "raise --max-held (BRANCHLINE_FOLLOWUP_REBUILD_MAX_HELD, now 2)" in str(refusal.value)
    assert "--from-stores" in str(refusal.value)


@pytest.mark.parametrize(
    "setting", ["followup_rebuild_max_held", "followup_rebuild_remembered_streams"]
)
def test_the_order_bounds_are_validated_settings(setting: str) -> None:
    assert getattr(BranchlineSettings(), setting) > 1_000  # the defaults: 10,000 and 131,072
    with pytest.raises(ValidationError, match=setting):
        BranchlineSettings(**{setting: 0})

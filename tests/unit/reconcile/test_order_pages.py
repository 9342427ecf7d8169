"""The self-check's order step walks its candidates a page at a time (pure: fake stores and
consumer): the same findings as judging everything at once, an out-of-order pair split by a
page boundary included, with no read holding more than a page's streams (#12)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.reconcile.compare import AppliedEvent, StoreEvent, compare
from branchline_shared.reconcile.ordering import JudgedStreams, OrderWatch, ReadStreams
from branchline_shared.reconcile.running import ConsumerSource, StoreSource

pytestmark = pytest.mark.unit

STORES = [StoreSource("intake", "unused")]


class History:
    """A store's events and the order a consumer applied them in (none kept: every one a
    candidate, as a product's or a staff member's events are in the followup worker)."""

    def __init__(self) -> None:
        self.events: list[StoreEvent] = []
        self.applied: list[AppliedEvent] = []
        self.reads: list[int] = []  # candidates asked per read
        self.held: list[int] = []  # store events returned per read

    def store(self, stream: str, version: int) -> uuid.UUID:
        n = len(self.events) + 1
        event = StoreEvent(
            "intake", uuid.UUID(int=n), LogPosition(n, n), stream, version, "", "t", False
        )
        self.events.append(event)
        return event.event_id

    def apply(self, *event_ids: uuid.UUID) -> None:
        for event_id in event_ids:
            self.applied.append(AppliedEvent(event_id, len(self.applied) + 1, "intake"))

    async def unordered(self, after: int, limit: int) -> list[AppliedEvent]:
        return [a for a in self.applied if (a.seq or 0) > after][:limit]

    async def applied_among(self, ids: Sequence[uuid.UUID]) -> list[AppliedEvent]:
        wanted = set(ids)
        return [a for a in self.applied if a.event_id in wanted]

    def consumer(self) -> ConsumerSource:
        async def nothing() -> list[AppliedEvent]:
            raise AssertionError("the order step never reads everything applied")

        return ConsumerSource(
            "c", "dlq", nothing, unordered=self.unordered, applied_among=self.applied_among
        )

    @contextlib.asynccontextmanager
    async def streams(self, stores: Sequence[StoreSource]) -> AsyncIterator[ReadStreams]:
        async def read(
            candidates: Sequence[uuid.UUID], judged: JudgedStreams
        ) -> dict[str, list[StoreEvent]]:
            self.reads.append(len(candidates))
            ids = set(candidates)
            wanted = {
                e.stream_id
                for e in self.events
                if e.event_id in ids and ("intake", e.stream_id) not in judged
            }
            for stream in wanted:
                judged.add(("intake", stream))
            events = [e for e in self.events if e.stream_id in wanted]
            self.held.append(len(events))
            return {"intake": events}

        yield read

    def everything_at_once(self) -> set[uuid.UUID]:
        """What judging the whole history in one read finds (the step before paging)."""
        return set(compare("c", {"intake": self.events}, self.applied).out_of_order)


def products(history: History, streams: int, versions: int) -> list[list[uuid.UUID]]:
    return [
        [history.store(f"product-{s}", v) for v in range(1, versions + 1)] for s in range(streams)
    ]


async def test_a_pair_split_by_a_page_boundary_is_found_each_read_a_page() -> None:
    history = History()
    streams = products(history, 6, 2)
    for first, second in streams[:2]:
        history.apply(first, second)  # seq 1-4: in order
    late, early = streams[2]
    history.apply(early)  # seq 5: version 2, the last of page 1
    history.apply(late)  # seq 6: version 1 after version 2, the first of page 2
    for first, second in streams[3:]:
        history.apply(first, second)  # seq 7-12
    watch = OrderWatch(history.consumer(), page=5, streams=history.streams)

    found = await watch.check(STORES, full=True)

    assert {e.event_id for e in found} == {late} == history.everything_at_once()
    assert watch.pages == 3  # 5 + 5 + 2
    assert watch.candidates == 12
    assert max(history.reads) <= 5
    assert max(history.held) <= 5 * 2  # a page's streams, never the history
    assert watch.largest_read == max(history.held)


async def test_a_stream_on_several_pages_is_read_once_a_check() -> None:
    history = History()
    (versions,) = products(history, 1, 9)
    history.apply(*versions[:4], versions[8], *versions[4:8])  # 5..8 after 9: four late
    watch = OrderWatch(history.consumer(), page=2, streams=history.streams)

    found = await watch.check(STORES, full=True)

    assert {e.event_id for e in found} == set(versions[4:8]) == history.everything_at_once()
    assert watch.pages == 5
    assert history.held == [9, 0, 0, 0, 0]  # judged whole at its first page, then skipped


async def test_the_next_check_takes_what_was_applied_since_and_the_findings() -> None:
    history = History()
    streams = products(history, 3, 2)
    (v1, v2), (w1, w2), (x1, x2) = streams
    history.apply(v2, v1, w1)  # v1 late
    watch = OrderWatch(history.consumer(), page=2, streams=history.streams)
    assert {e.event_id for e in await watch.check(STORES, full=True)} == {v1}
    history.apply(x2, x1, w2)  # x1 late
    found = await watch.check(STORES, full=False)  # the mark lags one check: still 3
    assert {e.event_id for e in found} == {v1, x1}
    history.reads.clear()
    found = await watch.check(STORES, full=False)  # the mark lags one check: still 3
    assert {e.event_id for e in found} == {v1, x1}
    assert watch.candidates == 3 + 1  # x2, x1, w2 since the mark, v1 found before
    assert max(history.reads) <= 2


def test_the_judged_streams_stay_within_their_limit() -> None:
    judged = JudgedStreams(limit=3)
    for n in range(10):
        judged.add(("intake", f"s-{n}"))
        judged.add(("intake", f"s-{n}"))
    assert len(judged) == 3
    assert ("intake", "s-9") in judged
    assert ("intake", "s-6") not in judged


async def test_a_stream_forgotten_by_a_small_memory_is_judged_again_with_the_same_verdict() -> None:
    history = History()
    streams = products(history, 4, 2)
    (a1, a2), (b1, b2), (c1, c2), (d1, d2) = streams
    history.apply(a2, b1, c1, d1, a1, b2, c2, d2)  # a1 late, on page 2 of 2
    watch = OrderWatch(history.consumer(), page=4, judged_limit=1, streams=history.streams)

    found = await watch.check(STORES, full=True)

    assert {e.event_id for e in found} == {a1} == history.everything_at_once()
    assert history.held[1] >= 2  # stream a read again on page 2: forgotten, judged again

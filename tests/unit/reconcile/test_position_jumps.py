"""A consumer sees a gap the moment an event skips versions of its stream (#13)."""

from __future__ import annotations

import tracemalloc
import uuid
from datetime import UTC, datetime

import pytest

from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.reconcile.jumps import PositionJumps

pytestmark = [pytest.mark.unit]


def event(stream: str, version: int, source: str = "intake") -> RecordedEvent:
    at = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type="client.registered",
        occurred_at=at,
        recorded_at=at,
        source=source,
        actor=Actor(id="staff-17", role="teller"),
        client_id="C-1",
        branch_id="BR-001",
        stream_id=stream,
        stream_version=version,
        data={"client_type": "individual", "rm_id": "rm-7"},
    )


def test_the_next_version_is_no_jump_and_a_skipped_one_triggers_the_repair_once() -> None:
    triggered: list[int] = []
    jumps = PositionJumps("test", lambda: triggered.append(1))
    assert [jumps.seen(event("client-C-1", v)) for v in (1, 2, 3)] == [False, False, False]
    assert jumps.seen(event("client-C-1", 5)) is True
    assert triggered == [1]
    assert jumps.seen(event("client-C-1", 6)) is False
    assert triggered == [1]


def test_redeliveries_and_late_republishes_are_not_jumps() -> None:
    triggered: list[int] = []
    jumps = PositionJumps("test", lambda: triggered.append(1))
    for version in (1, 2, 4):  # 3 skipped: one jump
        jumps.seen(event("client-C-1", version))
    assert jumps.seen(event("client-C-1", 3)) is False  # the re-published one, late
    assert jumps.seen(event("client-C-1", 2)) is False  # a redelivery
    assert triggered == [1]


def test_streams_first_seen_mid_way_and_other_streams_are_judged_apart() -> None:
    jumps = PositionJumps("test")
    assert jumps.seen(event("client-C-1", 7)) is False  # before: the periodic self-check's
    assert jumps.seen(event("client-C-2", 1)) is False
    assert jumps.seen(event("client-C-2", 1, source="followup")) is False  # another store
    assert jumps.seen(event("client-C-1", 8)) is False
    assert jumps.seen(event("client-C-2", 3)) is True


def test_only_the_most_recent_streams_are_remembered() -> None:
    jumps = PositionJumps("test", max_streams=2)
    jumps.seen(event("a", 1))
    jumps.seen(event("b", 1))
    jumps.seen(event("c", 1))  # forgets a
    assert jumps.seen(event("a", 5)) is False  # not judged: seen as new
    assert jumps.seen(event("c", 3)) is True


def test_the_least_recently_advanced_stream_is_forgotten_and_the_table_stays_at_its_bound() -> None:
    jumps = PositionJumps("test", max_streams=3)
    for stream in ("a", "b", "c"):
        jumps.seen(event(stream, 1))
    jumps.seen(event("a", 2))  # a advanced: b is now the least recent
    jumps.seen(event("b", 1))  # a redelivery does not make b recent
    jumps.seen(event("d", 1))  # forgets b
    assert len(jumps) == 3
    assert jumps.seen(event("b", 5)) is False  # forgotten: seen as new (forgets c)
    assert jumps.seen(event("a", 4)) is True
    assert jumps.seen(event("d", 3)) is True
    assert jumps.seen(event("c", 9)) is False  # forgotten in turn
    for i in range(100):
        jumps.seen(event(f"s{i}", 1))
    assert len(jumps) == 3


def test_streams_whose_hashes_collide_are_still_judged_apart() -> None:
    """Every key in one bucket: only the whole key finds a stream, so a collision can neither
    lend one stream's version to another (hiding its jump) nor lose one."""
    triggered: list[int] = []
    jumps = PositionJumps("test", lambda: triggered.append(1), max_streams=4)
    jumps._hash = lambda key: 0
    assert [jumps.seen(event(s, 1)) for s in ("a", "b", "c", "d")] == [False] * 4
    assert jumps.seen(event("a", 9)) is True  # b, c, d at 1 do not hide it
    assert jumps.seen(event("b", 2)) is False
    assert jumps.seen(event("c", 3)) is True
    jumps.seen(event("e", 1))  # full: forgets d, the least recent, from the chain's middle
    jumps.seen(event("f", 1))  # forgets a
    assert jumps.seen(event("b", 4)) is True
    assert jumps.seen(event("e", 3)) is True
    assert jumps.seen(event("d", 7)) is False  # forgotten: new again
    assert triggered == [1, 1, 1, 1]


def test_long_stream_ids_sharing_a_prefix_are_judged_apart() -> None:
    prefix = "client-" + "x" * 100
    jumps = PositionJumps("test", max_streams=4)
    jumps._hash = lambda key: 0
    jumps.seen(event(prefix + "1", 1))
    jumps.seen(event(prefix + "2", 5))
    assert jumps.seen(event(prefix + "1", 2)) is False  # 2's version 5 is not lent to 1
    assert jumps.seen(event(prefix + "1", 4)) is True
    assert jumps.seen(event(prefix + "2", 6)) is False


def test_a_remembered_stream_holds_no_python_object() -> None:
    """The table's memory is allocated once, at its bound (#12): streams replaced all the time
    must not leave small objects pinning the allocator's arenas."""
    jumps = PositionJumps("test", max_streams=1_000)
    events = [event(f"client-C-{i}", 1) for i in range(3_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for e in events:
            jumps.seen(e)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(jumps) == 1_000
    assert grown < 1_000  # bytes, for 3,000 streams seen: an object per stream is >= 50 each

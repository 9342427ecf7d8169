"""A consumer sees a gap the moment an event skips versions of its stream (#13)."""

from __future__ import annotations

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

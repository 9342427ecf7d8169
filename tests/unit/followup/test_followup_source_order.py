"""Order-safe read models (#13, ADR-0014): the source order of a client's events, the check
that finds one arriving late, and the client projected again in source order (in memory)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from followup_factories import MONDAY_9, RM_ID, an_event
from prometheus_client import REGISTRY

from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.application.clock import FixedOffset, ServiceClock
from branchline_followup.application.projector import Projection, apply_event
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.timers import run_due_timers
from branchline_followup.domain import FollowupPolicy
from branchline_followup.domain.source_order import (
    SourcePlace,
    arrives_late,
    in_source_order,
    recorded_ms,
)
from branchline_shared.clock import FixedClock
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import decode
from branchline_shared.kafka.wire import SourcePosition

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


def place(source: str, ms: int, position: int | None) -> SourcePlace:
    return SourcePlace(uuid.uuid4(), source, ms, position)


def test_recorded_ms_rounds_half_up_as_the_rebuild_merge() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert recorded_ms(epoch + timedelta(microseconds=1499)) == 1
    assert recorded_ms(epoch + timedelta(microseconds=1500)) == 2


def test_source_order_is_time_then_store_then_position() -> None:
    later = place("intake", 2, 1)
    followup_same_ms = place("followup", 1, 1)
    intake_second = place("intake", 1, 9)
    intake_first = place("intake", 1, 3)
    unpositioned = place("intake", 1, None)
    other_store = place("audit", 1, 0)
    ordered = in_source_order(
        [later, followup_same_ms, unpositioned, other_store, intake_second, intake_first]
    )
    assert ordered == [
        intake_first,
        intake_second,
        unpositioned,
        followup_same_ms,
        other_store,
        later,
    ]


def test_late_only_behind_a_later_event_of_the_same_store() -> None:
    kept = [place("intake", 10, 5), place("followup", 50, 7)]
    assert arrives_late(place("intake", 9, 4), kept)
    assert arrives_late(place("intake", 10, 4), kept)  # same millisecond, earlier position
    assert not arrives_late(place("intake", 11, 6), kept)
    # followup's own events are recorded while intake's are applied: never compared across
    assert not arrives_late(place("intake", 20, 6), kept)
    assert not arrives_late(place("intake", 1, None), kept)  # its place is unknown
    assert not arrives_late(place("followup", 60, 8), kept)
    assert arrives_late(place("followup", 40, 6), kept)


def history() -> list[tuple[RecordedEvent, SourcePosition]]:
    """One client's events as intake stored them (recorded time and position in order)."""
    start = MONDAY_9 - timedelta(days=3)
    events = [
        an_event("client.registered", {"client_type": "individual", "rm_id": RM_ID}, at=start),
        an_event("visit.arrived", {"visit_id": "V-1"}, at=start + timedelta(hours=1)),
        an_event(
            "visit.closed",
            {"visit_id": "V-1", "outcome": "normal"},
            at=start + timedelta(hours=2),
        ),
        an_event(
            "complaint.received",
            {"complaint_id": "K-1", "severity": "urgent", "summary": "x"},
            at=start + timedelta(hours=3),
        ),
        an_event("visit.arrived", {"visit_id": "V-2"}, at=start + timedelta(hours=4)),
    ]
    return [(e, SourcePosition("intake", n)) for n, e in enumerate(events, start=1)]


async def applied(order: list[tuple[RecordedEvent, SourcePosition]]) -> MemoryUnitsOfWork:
    units = MemoryUnitsOfWork()
    projection = Projection(FollowupPolicy(), task_creations_topic="followup.events")
    for event, position in order:
        assert await apply_event(units, decode(event), projection, position)
    return units


async def rebuilt(
    live: MemoryUnitsOfWork, events: list[tuple[RecordedEvent, SourcePosition]]
) -> MemoryUnitsOfWork:
    """What a rebuild makes: the events in source order (intake's, then followup's own,
    recorded later), recorded creations replayed from followup's store, nothing recorded."""
    fresh = MemoryUnitsOfWork()
    fresh.state.events = dict(live.state.events)
    projection = Projection(FollowupPolicy())
    for event, position in events:
        await apply_event(fresh, decode(event), projection, position)
    for stored in live.state.events.values():
        position = SourcePosition("followup", stored.position.global_position)
        await apply_event(fresh, decode(stored.event), projection, position)
    return fresh


def reprojections() -> float:
    return REGISTRY.get_sample_value("branchline_followup_reprojections_total") or 0.0


@pytest.mark.parametrize("late", [0, 1, 3])
async def test_an_event_arriving_after_later_ones_gives_what_a_rebuild_gives(late: int) -> None:
    """``late`` 0: the registration arrives last (the tasks of the client's other events were
    recorded without its RM: recorded creations are kept, D-07, as a rebuild keeps them)."""
    events = history()
    before = reprojections()
    live = await applied([e for i, e in enumerate(events) if i != late] + [events[late]])
    assert reprojections() == before + 1
    a, b = (await rebuilt(live, events)).state, live.state
    assert a.tasks
    assert b.tasks == a.tasks
    assert b.timers == a.timers
    assert b.clients == a.clients
    assert Counter(repr(x) for x in b.activity) == Counter(repr(x) for x in a.activity)
    # nothing recorded or published twice
    assert len(b.outbox) == len({event_id for event_id, _ in b.outbox}) == len(b.events)
    assert set(b.applied) == set(a.applied)


async def test_in_order_events_are_never_projected_again() -> None:
    events = history()
    before = reprojections()
    live = await applied(events)
    assert reprojections() == before
    assert live.state.tasks == (await rebuilt(live, events)).state.tasks


def promise_moved_and_kept() -> list[tuple[RecordedEvent, SourcePosition]]:
    """A complaint's promised update (D-17) renegotiated before its deadline, then kept by the
    resolution; the renegotiation reaches the worker only after the first deadline passed."""
    start = MONDAY_9 - timedelta(days=10)
    complaint = {"complaint_id": "K-1"}
    events = [
        an_event("client.registered", {"client_type": "individual", "rm_id": RM_ID}, at=start),
        an_event(
            "complaint.received",
            {**complaint, "severity": "general", "summary": "x"},
            at=start + timedelta(minutes=1),
        ),
        an_event(
            "complaint.progress_reported",
            {**complaint, "note": "x", "next_update_by": (start + timedelta(days=2)).isoformat()},
            at=start + timedelta(hours=1),
        ),
        an_event(
            "complaint.promise_renegotiated",
            {
                **complaint,
                "promised_by": (start + timedelta(days=6)).isoformat(),
                "reason": "awaiting_third_party",
                "alternative": "x",
                "client_told": True,
            },
            at=start + timedelta(days=1),
        ),
        an_event(
            "complaint.resolved", {**complaint, "resolution": "x"}, at=start + timedelta(days=4)
        ),
    ]
    return [(e, SourcePosition("intake", n)) for n, e in enumerate(events, start=1)]


async def test_an_overdue_timer_of_a_deadline_moved_then_closed_is_dropped_in_any_order() -> None:
    """The promise's timer fires at its first deadline while the renegotiation (recorded
    before it) is still on its way; applied, the renegotiation arms the timer of the new
    deadline, and the resolution closes the promise, dropping that unfired timer. A rebuild
    applies the renegotiation and the resolution before the recorded ``followup.overdue``
    (recorded later): that event must not bring back a fired timer the worker does not have
    (the task closed at another deadline than the event's)."""
    events = promise_moved_and_kept()
    units = MemoryUnitsOfWork()
    projection = Projection(FollowupPolicy(), task_creations_topic="followup.events")
    for event, position in events[:3]:
        assert await apply_event(units, decode(event), projection, position)
    fired_at = events[0][0].occurred_at + timedelta(days=3)
    ctx = FollowupContext(
        pool=None,  # type: ignore[arg-type]  # the use cases under test write through ``units``
        units=units,
        projection=projection,
        topic="followup.events",
        clock=ServiceClock(FixedOffset(), FixedClock(fired_at), dev_mode=False),
    )
    assert (await run_due_timers(ctx, fired_at)).fired >= 1
    for event, position in events[3:]:
        assert await apply_event(units, decode(event), projection, position)
    a, b = (await rebuilt(units, events)).state, units.state
    assert b.tasks == a.tasks
    assert b.overdue == a.overdue
    assert b.timers == a.timers

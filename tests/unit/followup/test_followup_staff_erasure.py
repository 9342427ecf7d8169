"""D-04 / D-11 for a member of staff: their own texts (sealed under ``#staff/<id>``) are
destroyed when the retention of their records, counted from the end of employment, has run;
never while they are employed, never while a client their gift records name is under hold."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.application.clock import FixedOffset, ServiceClock
from branchline_followup.application.projector import Projection, apply_event
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.shredding import shred_due
from branchline_followup.domain import FollowupPolicy
from branchline_followup.domain.erasure import (
    RetentionRule,
    StaffErasureCase,
    staff_held,
    staff_shred_plan,
)
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore, PrivacyState
from branchline_shared.events.catalogue import ShredBasis
from branchline_shared.events.envelope import Actor, RecordedEvent, staff_stream_id
from branchline_shared.events.typed import decode
from branchline_shared.kafka.wire import SourcePosition

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
REQUESTED = NOW - timedelta(days=1)
RULE = RetentionRule(
    years_by_profile={"default": 10, "us_sec_17a4": 6, "none": 0},
    branch_profiles={"BR-NY": "us_sec_17a4", "BR-X": "none"},
)
ADMIN = Actor(id="dpo-1", role="admin")
SEALED = "bl:pii:v1:k:n:c"


def case(**changes: object) -> StaffErasureCase:
    values: dict[str, object] = {
        "staff_id": "S-1",
        "branch_id": "BR-001",
        "erasure_event_id": uuid.uuid4(),
        "erasure_requested_at": REQUESTED,
        "employment_ended_at": None,
    }
    values.update(changes)
    return StaffErasureCase(**values)  # type: ignore[arg-type]


def test_still_employed_no_date_yet() -> None:
    assert staff_shred_plan(case(), RULE) is None


def test_retention_runs_from_the_end_of_employment() -> None:
    ended = datetime(2025, 6, 30, 18, 0, tzinfo=UTC)
    plan = staff_shred_plan(case(employment_ended_at=ended), RULE)
    assert plan is not None
    assert plan.basis is ShredBasis.RETENTION_ENDED
    assert plan.retention_until == datetime(2035, 6, 30, 18, 0, tzinfo=UTC)
    assert plan.due_at == plan.retention_until


def test_a_leaver_whose_retention_has_run_is_destroyed_on_request() -> None:
    ended = datetime(2014, 3, 31, tzinfo=UTC)
    plan = staff_shred_plan(case(employment_ended_at=ended), RULE)
    assert plan is not None
    assert plan.basis is ShredBasis.RETENTION_ENDED
    assert plan.retention_until == datetime(2024, 3, 31, tzinfo=UTC)
    assert plan.due_at == REQUESTED  # never before the request


def test_the_profile_of_their_branch_decides() -> None:
    ended = datetime(2019, 1, 15, tzinfo=UTC)
    plan = staff_shred_plan(case(branch_id="BR-NY", employment_ended_at=ended), RULE)
    assert plan is not None
    assert plan.retention_until == datetime(2025, 1, 15, tzinfo=UTC)
    keeps_nothing = staff_shred_plan(case(branch_id="BR-X"), RULE)
    assert keeps_nothing is not None
    assert keeps_nothing.basis is ShredBasis.NO_RETENTION
    assert keeps_nothing.due_at == REQUESTED


def test_a_legal_hold_beats_erasure() -> None:
    ended = datetime(2014, 3, 31, tzinfo=UTC)
    assert staff_shred_plan(case(employment_ended_at=ended, legal_hold=True), RULE) is None


# --- the job, on the in-memory read models ------------------------------------------------------


class Holds:
    def __init__(self, held: set[str]) -> None:
        self.standing = held
        self.asked: list[str] = []

    async def held(self, client_ids: Sequence[str]) -> set[str]:
        self.asked.extend(client_ids)
        return self.standing & set(client_ids)


def staff_event(
    staff_id: str, event_type: str, data: dict[str, Any], version: int, branch_id: str = "BR-001"
) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=REQUESTED,
        recorded_at=REQUESTED,
        source="intake",
        actor=ADMIN,
        staff_id=staff_id,
        branch_id=branch_id,
        stream_id=staff_stream_id(staff_id),
        stream_version=version,
        data=data,
    )


def gift(staff_id: str, client_id: str) -> RecordedEvent:
    data = {"client_id": client_id, "value": "0", "accepted": False, "description": SEALED}
    return staff_event(staff_id, "staff.gift_recorded", data, 1)


def erasure(staff_id: str, ended: datetime | None) -> RecordedEvent:
    data: dict[str, Any] = {"reason": SEALED}
    if ended is not None:
        data["employment_ended_at"] = ended.isoformat()
    return staff_event(staff_id, "staff.erasure_requested", data, 2)


async def projected(units: MemoryUnitsOfWork, events: list[RecordedEvent]) -> FollowupContext:
    projection = Projection(FollowupPolicy(), task_creations_topic="followup.events")
    for position, event in enumerate(events, start=1):
        assert await apply_event(
            units, decode(event), projection, SourcePosition("intake", position)
        )
    return FollowupContext(
        pool=None,  # type: ignore[arg-type]  # the job writes through ``units``
        units=units,
        projection=projection,
        topic="followup.events",
        clock=ServiceClock(FixedOffset(), FixedClock(NOW), dev_mode=False),
    )


async def test_the_job_destroys_a_leavers_key_records_it_and_spares_the_others() -> None:
    long_ago = datetime(2014, 3, 31, tzinfo=UTC)
    units = MemoryUnitsOfWork()
    ctx = await projected(
        units,
        [
            gift("S-GONE", "C-FREE"),
            erasure("S-GONE", long_ago),
            erasure("S-STAYS", None),  # still employed: restricted, no date
            gift("S-HELD", "C-HELD"),
            erasure("S-HELD", long_ago),  # a client their gift names is under hold
        ],
    )
    keys = InMemoryClientKeyStore()
    for key_id in ("#staff/S-GONE", "#staff/S-STAYS", "#staff/S-HELD", "#staff/S-OTHER", "C-FREE"):
        await keys.key_for(key_id)
    holds = Holds({"C-HELD"})

    statuses = {s.client_id: s for s in await shred_due(ctx, keys, RULE, holds)}

    assert set(statuses) == {"#staff/S-GONE", "#staff/S-STAYS", "#staff/S-HELD"}
    gone = statuses["#staff/S-GONE"]
    assert gone.shredded
    assert gone.plan is not None
    assert gone.plan.basis is ShredBasis.RETENTION_ENDED
    assert statuses["#staff/S-HELD"].held
    assert not statuses["#staff/S-HELD"].shredded
    assert statuses["#staff/S-STAYS"].plan is None
    assert not statuses["#staff/S-STAYS"].shredded
    # the holds asked about: the clients their gifts name, and the due members of staff
    assert set(holds.asked) == {"C-FREE", "C-HELD", "#staff/S-GONE", "#staff/S-HELD"}
    assert await keys.states(
        ["#staff/S-GONE", "#staff/S-STAYS", "#staff/S-HELD", "#staff/S-OTHER", "C-FREE"]
    ) == {
        "#staff/S-GONE": PrivacyState.SHREDDED,
        "#staff/S-STAYS": PrivacyState.RESTRICTED,
        "#staff/S-HELD": PrivacyState.RESTRICTED,
        "#staff/S-OTHER": PrivacyState.ACTIVE,
        "C-FREE": PrivacyState.ACTIVE,  # the giver's own key is not the staff's
    }
    # recorded in followup's store (and outbox) on the staff's privacy stream, applied there
    (shred,) = [
        e.event
        for e in units.state.events.values()
        if e.event.type == "staff.personal_data_shredded"
    ]
    assert shred.staff_id == "S-GONE"
    assert shred.client_id is None
    assert shred.stream_id == "privacy-staff/S-GONE"
    assert shred.actor == Actor(id="privacy-shredder", role="system")
    assert shred.data["basis"] == "retention_ended"
    assert shred.data["retention_until"].startswith("2024-03-31")
    state = units.state.staff_privacy["S-GONE"]
    assert state.shredded_at == NOW
    assert state.shred_event_id == shred.event_id

    # a second round: nothing pending for S-GONE, nothing recorded again
    again = await shred_due(ctx, keys, RULE, holds)
    assert "#staff/S-GONE" not in {s.client_id for s in again}
    shredding = [e for e in units.state.events.values() if e.event.type == shred.type]
    assert len(shredding) == 1


async def test_a_later_request_naming_the_end_of_employment_sets_the_date() -> None:
    units = MemoryUnitsOfWork()
    first = erasure("S-1", None)
    later = staff_event(
        "S-1",
        "staff.erasure_requested",
        {"reason": SEALED, "employment_ended_at": "2015-01-31T00:00:00+00:00"},
        3,
    )
    ctx = await projected(units, [first, later])
    keys = InMemoryClientKeyStore()
    (status,) = await shred_due(ctx, keys, RULE, Holds(set()), dry_run=True)
    assert status.plan is not None
    assert status.plan.retention_until == datetime(2025, 1, 31, tzinfo=UTC)
    state = units.state.staff_privacy["S-1"]
    assert state.erasure_event_id == first.event_id  # restricted since the first request
    assert await keys.states(["#staff/S-1"]) == {"#staff/S-1": PrivacyState.ACTIVE}  # dry run


async def test_a_shredding_applied_before_its_request_leaves_nothing_pending() -> None:
    """A rebuild may read followup's store (the shredding) before intake's (the request)."""
    request = erasure("S-1", datetime(2014, 3, 31, tzinfo=UTC))
    shredded = RecordedEvent(
        event_id=uuid.uuid4(),
        type="staff.personal_data_shredded",
        occurred_at=NOW,
        recorded_at=NOW,
        source="followup",
        actor=Actor(id="privacy-shredder", role="system"),
        staff_id="S-1",
        branch_id="BR-001",
        stream_id="privacy-staff/S-1",
        stream_version=1,
        data={"basis": "retention_ended", "erasure_event_id": str(request.event_id)},
    )
    units = MemoryUnitsOfWork()
    await projected(units, [shredded, request])
    state = units.state.staff_privacy["S-1"]
    assert state.shredded
    assert state.erasure_event_id == request.event_id
    assert state.erasure_requested_at == REQUESTED
    async with units.begin() as uow:
        assert await uow.privacy.pending_staff_erasures() == []


def test_a_member_of_staff_is_held_by_a_hold_on_them_or_on_a_client_their_gifts_name() -> None:
    assert staff_held("S-1", (), {"#staff/S-1"})
    assert staff_held("S-1", ("C-1",), {"C-1"})
    assert not staff_held("S-1", ("C-1",), {"#staff/S-2", "C-2", "S-1"})


async def test_a_hold_on_the_member_of_staff_stops_the_destruction_and_lifting_it_lets_it_run() -> (
    None
):
    long_ago = datetime(2014, 3, 31, tzinfo=UTC)
    units = MemoryUnitsOfWork()
    ctx = await projected(units, [erasure("S-HELD", long_ago), erasure("S-FREE", long_ago)])
    keys = InMemoryClientKeyStore()
    for key_id in ("#staff/S-HELD", "#staff/S-FREE"):
        await keys.key_for(key_id)
    holds = Holds({"#staff/S-HELD"})  # a hold naming the member of staff, no gift at all

    statuses = {s.client_id: s for s in await shred_due(ctx, keys, RULE, holds)}

    assert statuses["#staff/S-HELD"].held
    assert not statuses["#staff/S-HELD"].shredded
    assert statuses["#staff/S-FREE"].shredded
    assert {"#staff/S-HELD", "#staff/S-FREE"} <= set(holds.asked)
    assert await keys.states(["#staff/S-HELD"]) == {"#staff/S-HELD": PrivacyState.RESTRICTED}

    holds.standing = set()  # lifted: the retention, long run, now destroys the key
    again = {s.client_id: s for s in await shred_due(ctx, keys, RULE, holds)}
    assert again["#staff/S-HELD"].shredded
    assert await keys.states(["#staff/S-HELD"]) == {"#staff/S-HELD": PrivacyState.SHREDDED}

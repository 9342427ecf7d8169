"""D-04 for a member of staff: their access request (``staff.data_access_requested``, an
admin's) makes an answer due for the privacy officer with the client's deadline settings; the
answer (their own texts in clear, with provenance) is recorded as
``staff.personal_data_accessed`` and closes it; restricted after their erasure request, gone
after its shredding."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.application.clock import FixedOffset, ServiceClock
from branchline_followup.application.personal_data import (
    StaffDataRestricted,
    StaffDataShredded,
    StaffUnknown,
    answer_staff_access_request,
)
from branchline_followup.application.projector import Projection, apply_event
from branchline_followup.application.recording import FollowupContext
from branchline_followup.domain import FollowupPolicy, TaskKind, TaskStatus
from branchline_followup.domain.rules_privacy import staff_access_request_commands
from branchline_followup.domain.tasks import CreateTask
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore
from branchline_shared.crypto.sealing import seal
from branchline_shared.events.envelope import Actor, RecordedEvent, staff_stream_id
from branchline_shared.events.typed import decode
from branchline_shared.kafka.wire import SourcePosition

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
ASKED = NOW - timedelta(days=1)
ADMIN = Actor(id="dpo-1", role="admin")
TOPIC = "Pieter-de-Vries-disciplinary-retraining"
GIFT = "a-bottle-of-cognac-from-the-Lins"


def staff_event(
    staff_id: str, event_type: str, data: dict[str, Any], *, at: datetime = ASKED
) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=at,
        recorded_at=at,
        source="intake",
        actor=ADMIN,
        staff_id=staff_id,
        branch_id="BR-001",
        stream_id=staff_stream_id(staff_id),
        stream_version=1,
        data=data,
    )


def request(staff_id: str) -> RecordedEvent:
    return staff_event(staff_id, "staff.data_access_requested", {"channel": "online"})


# --- the rule, pure ---------------------------------------------------------------------------


def test_a_request_is_due_for_the_privacy_officer_with_the_clients_deadline_settings() -> None:
    policy = FollowupPolicy(
        branch_profiles=MappingProxyType({"BR-001": "uk_fca_disp"}),
        access_request_within_by_profile=MappingProxyType({"uk_fca_disp": timedelta(days=30)}),
    )
    asked = request("S-1")
    (command,) = staff_access_request_commands(decode(asked), [], policy)
    assert isinstance(command, CreateTask)
    task = command.task
    assert task.kind is TaskKind.DATA_ACCESS_REQUEST
    assert task.client_id == "#staff/S-1"  # held under their key id, never a client's
    assert task.assignee == "privacy-officer"
    assert task.deadline_profile == "uk_fca_disp"
    assert task.due_at == ASKED + timedelta(days=30)
    assert task.source_event_id == asked.event_id
    (default,) = staff_access_request_commands(decode(asked), [], FollowupPolicy())
    assert isinstance(default, CreateTask)
    assert default.task.due_at == ASKED + timedelta(days=15)


def test_other_staff_events_open_nothing() -> None:
    data = {"hours": "2", "topic": "x", "completed_at": ASKED.isoformat()}
    training = staff_event("S-1", "staff.training_recorded", data)
    assert staff_access_request_commands(decode(training), [], FollowupPolicy()) == []


# --- the answer, on the in-memory read models -------------------------------------------------


async def stack(events: list[RecordedEvent]) -> tuple[FollowupContext, MemoryUnitsOfWork]:
    units = MemoryUnitsOfWork()
    projection = Projection(FollowupPolicy(), task_creations_topic="followup.events")
    ctx = FollowupContext(
        pool=None,  # type: ignore[arg-type]  # written through ``units``
        units=units,
        projection=projection,
        topic="followup.events",
        clock=ServiceClock(FixedOffset(), FixedClock(NOW), dev_mode=False),
        keys=InMemoryClientKeyStore(),
    )
    await feed(ctx, events)
    return ctx, units


async def feed(ctx: FollowupContext, events: list[RecordedEvent]) -> None:
    for event in events:
        assert await apply_event(
            ctx.units,
            decode(event),
            ctx.projection,
            SourcePosition("intake", 1 + id(event) % 10**9),
        )


async def sealed_texts(ctx: FollowupContext, staff_id: str) -> list[RecordedEvent]:
    assert ctx.keys is not None
    key_id = f"#staff/{staff_id}"
    key = await ctx.keys.key_for(key_id)
    training = staff_event(
        staff_id,
        "staff.training_recorded",
        {
            "hours": "3",
            "topic": seal(TOPIC, key, client_id=key_id, path="topic"),
            "completed_at": ASKED.isoformat(),
        },
    )
    gift = staff_event(
        staff_id,
        "staff.gift_recorded",
        {
            "client_id": "C-1",
            "value": "40",
            "accepted": False,
            "description": seal(GIFT, key, client_id=key_id, path="description"),
        },
        at=ASKED + timedelta(minutes=1),  # after the training: the copy is in time order
    )
    return [training, gift]


def access_tasks(units: MemoryUnitsOfWork, staff_id: str) -> list[Any]:
    return [
        t
        for t in units.state.tasks.values()
        if t.client_id == f"#staff/{staff_id}" and t.kind is TaskKind.DATA_ACCESS_REQUEST
    ]


async def test_the_answer_shows_their_texts_records_the_access_and_closes_the_request() -> None:
    ctx, units = await stack([])
    asked = request("S-1")
    await feed(ctx, [*await sealed_texts(ctx, "S-1"), asked, *await sealed_texts(ctx, "S-2")])
    (task,) = access_tasks(units, "S-1")
    assert task.status is TaskStatus.OPEN

    copy = await answer_staff_access_request(ctx, "S-1", purpose="D-04 request", actor=ADMIN)

    assert [(v.value, v.source.event_type, v.source.path) for v in copy.values] == [
        (TOPIC, "staff.training_recorded", "topic"),
        (GIFT, "staff.gift_recorded", "description"),
    ]  # theirs only: S-2's texts are not in it
    assert copy.request_event_id == asked.event_id
    (accessed,) = [
        e.event
        for e in units.state.events.values()
        if e.event.type == "staff.personal_data_accessed"
    ]
    assert accessed.event_id == copy.access_event_id
    assert accessed.staff_id == "S-1"
    assert accessed.client_id is None
    assert accessed.stream_id == "privacy-staff/S-1"
    assert accessed.actor == ADMIN
    assert accessed.data["texts"] == [
        "staff.gift_recorded/description",
        "staff.training_recorded/topic",
    ]
    assert accessed.data["request_event_id"] == str(asked.event_id)
    assert accessed.data["purpose"] != "D-04 request"  # sealed like every personal value
    (closed,) = access_tasks(units, "S-1")
    assert closed.status is TaskStatus.DONE
    assert closed.closed_by_event_id == accessed.event_id


async def test_restricted_after_their_erasure_request_gone_after_its_shredding() -> None:
    ctx, units = await stack([])
    erasure = staff_event("S-1", "staff.erasure_requested", {"reason": "bl:pii:v1:k:n:c"}, at=NOW)
    await feed(ctx, [*await sealed_texts(ctx, "S-1"), request("S-1"), erasure])
    (task,) = access_tasks(units, "S-1")
    assert task.status is TaskStatus.CANCELLED  # restricted data is shown to nobody
    with pytest.raises(StaffDataRestricted) as restricted:
        await answer_staff_access_request(ctx, "S-1", purpose="p", actor=ADMIN)
    assert "D-04" in restricted.value.detail

    shredded = staff_event(
        "S-1",
        "staff.personal_data_shredded",
        {"basis": "retention_ended", "erasure_event_id": str(erasure.event_id)},
        at=NOW,
    )
    await feed(ctx, [shredded])
    assert "#staff/S-1" not in units.state.personal_values  # not even the ciphertext stays
    with pytest.raises(StaffDataShredded) as gone:
        await answer_staff_access_request(ctx, "S-1", purpose="p", actor=ADMIN)
    assert "training topics" in gone.value.detail  # says what is gone
    assert "stay" in gone.value.detail  # and what is not
    accessed = [e for e in units.state.events.values() if e.event.type.endswith("accessed")]
    assert accessed == []  # a refused answer records no access


async def test_an_unknown_member_of_staff_is_not_found() -> None:
    ctx, _ = await stack([])
    with pytest.raises(StaffUnknown):
        await answer_staff_access_request(ctx, "S-NOBODY", purpose="p", actor=ADMIN)


async def test_a_reprojection_of_the_tasks_held_under_their_key_id_keeps_their_texts() -> None:
    """A late ``followup.*`` event of their request's task re-projects ``#staff/<id>`` from its
    journal, which holds no staff event: their texts must not be cleared with it."""
    ctx, units = await stack([])
    await feed(ctx, [*await sealed_texts(ctx, "S-1"), request("S-1")])
    async with units.begin() as uow:
        await uow.journal.clear_read_models("#staff/S-1")
    copy = await answer_staff_access_request(ctx, "S-1", purpose="p", actor=ADMIN)
    assert [v.value for v in copy.values] == [TOPIC, GIFT]

"""The work a task's creation costs when no decision of it was recorded (#12): the steady
state's every creation. What is stored is the same (tests/integration/followup/
test_followup_batches.py's random batches compare it with one event at a time, and the
rebuild's replay with the recorded creations); these count the work left out."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from followup_factories import MONDAY_9, RM_ID, an_event

from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.application import task_creations
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.projector import Projection, apply_event
from branchline_followup.domain import FollowupPolicy, FollowupTask, TaskKind
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import decode

pytestmark = pytest.mark.asyncio

TOPIC = "followup.events"


def registered(client_id: str) -> RecordedEvent:
    return an_event(
        "client.registered",
        {"client_type": "individual", "rm_id": RM_ID},
        at=MONDAY_9 - timedelta(days=1),
        client_id=client_id,
    )


def closed_visit(client_id: str, visit_id: str) -> RecordedEvent:
    return an_event(
        "visit.closed", {"visit_id": visit_id, "outcome": "normal"}, client_id=client_id
    )


class Counted:
    """Counts the calls of what it wraps."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.wrapped(*args, **kwargs)


def surveys(units: MemoryUnitsOfWork) -> list[FollowupTask]:
    return [t for t in units.state.tasks.values() if t.kind is TaskKind.SATISFACTION_SURVEY]


@pytest.mark.parametrize("path", ["one-event", "batch"])
async def test_a_creation_of_no_recorded_decision_compares_no_decisions_nor_tasks(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D-07: a decision recorded before is replayed; one that was not (no recorded creation
    of its source event) keeps what today's rules made and is recorded now. Its tasks are
    then neither compared by decision (source, client, instant) with recorded ones, nor each
    new task with the nothing it had before (``None != task`` asked ``FollowupTask.__eq__``).
    On the code before this change both counts are the created tasks' (or more)."""
    units = MemoryUnitsOfWork()
    projection = Projection(FollowupPolicy(), task_creations_topic=TOPIC)
    clients = [f"C-{n}" for n in range(10001, 10004)]
    for client_id in clients:
        assert await apply_event(units, decode(registered(client_id)), projection)

    decisions = Counted(task_creations._decision)
    monkeypatch.setattr(task_creations, "_decision", decisions)
    compared = Counted(FollowupTask.__eq__)

    def counted_eq(task: FollowupTask, other: object) -> bool:
        return compared(task, other)  # type: ignore[no-any-return]

    monkeypatch.setattr(FollowupTask, "__eq__", counted_eq)
    visits = [closed_visit(c, f"V-{n}") for n, c in enumerate(clients)]
    if path == "batch":
        outcome = await apply_batch(
            units, [Delivered(v) for v in visits], projection, consumer="test"
        )
        assert (outcome.applied, outcome.failed) == (len(visits), [])
    else:
        for visit in visits:
            assert await apply_event(units, decode(visit), projection)

    made = surveys(units)
    assert sorted(t.client_id for t in made) == clients  # each made, and recorded:
    recorded = {
        s.event.causation_id
        for s in units.state.events.values()
        if s.event.type == "followup.task_created"
    }
    assert {str(v.event_id) for v in visits} <= recorded
    assert (decisions.calls, compared.calls) == (0, 0), "compared again (#12)"


async def test_a_recorded_decision_is_still_compared_and_replayed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other side: a decision recorded before (its creation in the store, the task read
    models lost, as a rebuild finds it) is compared and replayed, its deadline kept (D-07)."""
    units = MemoryUnitsOfWork()
    projection = Projection(FollowupPolicy(), task_creations_topic=TOPIC)
    events = [registered("C-10001"), closed_visit("C-10001", "V-1")]
    for event in events:
        assert await apply_event(units, decode(event), projection)
    (first,) = surveys(units)

    fresh = MemoryUnitsOfWork()
    fresh.state.events = dict(units.state.events)  # the recorded creation, nothing applied
    later = Projection(FollowupPolicy(survey_within=timedelta(days=40)), task_creations_topic=TOPIC)
    decisions = Counted(task_creations._decision)
    monkeypatch.setattr(task_creations, "_decision", decisions)
    for event in events:
        assert await apply_event(fresh, decode(event), later)
    (again,) = surveys(fresh)
    assert (again.id, again.due_at) == (first.id, first.due_at)
    assert decisions.calls > 0
    assert isinstance(again.id, uuid.UUID)

"""D-07 on the worker's path: recorded task creations are looked up by the event whose decision
made them (#12: by the creation's cause, one key per deciding event, not every task kind's
candidate id). A creation recorded by an earlier batch, or by another replica that held the
client meanwhile, is found and replayed (its deadline kept), never recorded twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.projector import Projection, project
from branchline_followup.application.task_creations import (
    PendingCreations,
    recorded_creations,
)
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_followup.domain import FollowupPolicy
from branchline_followup.entrypoints.worker import CONSUMER
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import decode
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.test_followup_batches import an_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "followup.events"
FIRST = Projection(FollowupPolicy(), task_creations_topic=TOPIC)
"""The policy in force when the creations were recorded (a survey within 3 days)."""
CHANGED = Projection(FollowupPolicy(survey_within=timedelta(days=10)), task_creations_topic=TOPIC)
"""A later policy: replaying a recorded creation must keep its deadline (D-07)."""


def journey(client_id: str) -> tuple[RecordedEvent, RecordedEvent, RecordedEvent]:
    """A registration, then a closed visit (it makes a survey due: one recorded creation),
    and between them an event that arrives after the visit (late: the client is projected
    again from its journal, so the visit's survey is decided again)."""
    registered = an_event(
        "client.registered", client_id, {"client_type": "individual", "rm_id": "rm-7"}, 1
    )
    late = an_event(
        "client.identity_verified",
        client_id,
        {"method": "networked_id_check", "document_type": "resident_id"},
        2,
    )
    visit = an_event("visit.closed", client_id, {"visit_id": "V-1", "outcome": "normal"}, 3)
    return registered, late, visit


def at(event: RecordedEvent) -> Delivered:
    return Delivered(event, SourcePosition("intake", event.stream_version))


@pytest.fixture
async def units(settings: BranchlineSettings) -> AsyncIterator[PostgresUnitsOfWork]:
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    yield PostgresUnitsOfWork(pool)
    await pool.close()


async def creations_of(db: asyncpg.Connection[Any], source: RecordedEvent) -> list[Any]:
    """followup's recorded creations caused by ``source``: (task id, due_at)."""
    rows = await db.fetch(
        "SELECT envelope -> 'data' ->> 'task_id' AS task_id, envelope -> 'data' ->> 'due_at' "
        "AS due_at FROM es_events WHERE type = 'followup.task_created' "
        "AND envelope ->> 'causation_id' = $1",
        str(source.event_id),
    )
    return [(r["task_id"], r["due_at"]) for r in rows]


async def survey_due(db: asyncpg.Connection[Any], client_id: str) -> list[datetime]:
    rows = await db.fetch(
        "SELECT due_at FROM fu_read.fu_tasks WHERE client_id = $1 AND kind = 'satisfaction_survey'",
        client_id,
    )
    return [r["due_at"] for r in rows]


async def test_a_creation_recorded_by_an_earlier_batch_is_found_by_its_source(
    units: PostgresUnitsOfWork, db: asyncpg.Connection[Any]
) -> None:
    registered, late, visit = journey("C-1")
    first = await apply_batch(units, [at(registered), at(visit)], FIRST, consumer=CONSUMER)
    assert (first.applied, first.failed, first.one_by_one) == (2, [], False)
    recorded = await creations_of(db, visit)
    assert len(recorded) == 1
    due = await survey_due(db, "C-1")
    assert len(due) == 1
    survey_id = uuid.UUID(recorded[0][0])

    # the read-ahead of a later unit finds it by the visit's id, and the stored task with it
    async with units.begin() as uow:
        await uow.hold_clients_of([(visit, SourcePosition("intake", 3))])
        pending = PendingCreations()
        await pending.look_up_ahead(uow, [visit.event_id, registered.event_id])
        assert set(pending.found[visit.event_id]) == {survey_id}
        found = await recorded_creations(uow, [visit.event_id], pending=pending)
        assert set(found) == {survey_id}
        stored = await uow.tasks.get_caused(survey_id, visit.event_id)
        assert stored is not None
        assert stored.due_at == due[0]
        of_registration = await recorded_creations(uow, [registered.event_id], pending=pending)
        assert {str(t) for t in of_registration} == {
            t for t, _ in await creations_of(db, registered)
        }
        assert await recorded_creations(uow, [late.event_id], pending=pending) == {}

    # a late event makes the client be projected again: the visit's survey is replayed from
    # its recorded creation (the deadline of the policy then in force), not recorded again
    second = await apply_batch(units, [at(late)], CHANGED, consumer=CONSUMER)
    assert (second.applied, second.failed, second.one_by_one) == (1, [], False)
    assert await creations_of(db, visit) == recorded
    assert await survey_due(db, "C-1") == due


async def test_a_creation_recorded_by_a_concurrent_replica_is_found_not_recorded_twice(
    settings: BranchlineSettings, units: PostgresUnitsOfWork, db: asyncpg.Connection[Any]
) -> None:
    """Another replica (its own pool) applies the visit while this one's batch holds the
    client's late event: the batch waits for the client's lock, then finds the creation the
    other recorded (the look-up runs under the lock) and replays it."""
    registered, late, visit = journey("C-2")
    other_pool = await open_read_model_pool(settings)
    try:
        replica = PostgresUnitsOfWork(other_pool)
        async with replica.begin() as uow:
            assert await project(uow, decode(registered), FIRST, SourcePosition("intake", 1))
            assert await project(uow, decode(visit), FIRST, SourcePosition("intake", 3))
            batch = asyncio.create_task(apply_batch(units, [at(late)], CHANGED, consumer=CONSUMER))
            # the batch waits for the client's lock, which the replica's unit holds
            while not await db.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ):
                assert not batch.done(), "the batch must wait for the client's lock"
                await asyncio.sleep(0.05)
        recorded = await creations_of(db, visit)
        due = await survey_due(db, "C-2")
        outcome = await batch
    finally:
        await other_pool.close()
    assert (outcome.applied, outcome.failed, outcome.one_by_one) == (1, [], False)
    assert len(recorded) == 1
    assert await creations_of(db, visit) == recorded
    assert await survey_due(db, "C-2") == due
    assert len(due) == 1

"""A race the worker or the timer runner loses in followup's event store is run again, not
taken for poison (#12, docs/reliability.md "Consumers and the store's own conflicts").

The race is planted between the unit's read and its write: just before the unit writes a
creation (or a timer's event), another writer, on a connection of its own and outside the
client's lock (an older release during a rolling upgrade, a repair by hand), commits the same
event. The unit's write then fails on the taken id (``ConcurrencyError``). Until Round 24 that
was not transient: the batch fell back to one by one, and an event whose own unit lost a race
too was dead-lettered although it was good; a timer that lost one was set aside as dead."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters import read_models
from branchline_followup.adapters.unit_of_work import (
    PostgresFollowupUnitOfWork,
    PostgresUnitsOfWork,
)
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.projector import Projection
from branchline_followup.application.timers import run_due_timers
from branchline_followup.bootstrap import followup_runtime, open_read_model_pool, prepare_database
from branchline_followup.domain import FollowupPolicy
from branchline_followup.entrypoints.worker import CONSUMER, handle_batch
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.consuming import CONFLICT_RERUNS, RawMessage
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc, relayed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECORDING = Projection(FollowupPolicy(), task_creations_topic="followup.events")


class DeadLetterBox:
    def __init__(self) -> None:
        self.sent: list[tuple[RawMessage, str]] = []

    async def send(self, raw: RawMessage, reason: str) -> None:
        self.sent.append((raw, reason))


class RacedUnits:
    """``units`` whose writes of followup's own events each lose a race first, up to
    ``races`` times: another writer commits one of the events about to be written (the first
    it has not planted yet; ``every_event``: on a stream of its own, as a writer of the same
    id elsewhere would) just before the unit writes them."""

    def __init__(self, units: PostgresUnitsOfWork, other: PostgresUnitsOfWork, races: int) -> None:
        self._units = units
        self._other = other
        self.races_left = races
        self.planted: list[uuid.UUID] = []
        self.elsewhere = False

    async def _plant(self, events: Sequence[RecordedEvent], topic: str) -> None:
        fresh = [e for e in events if e.event_id not in self.planted]
        if not fresh or self.races_left <= 0:
            return
        self.races_left -= 1
        event = fresh[0]
        if self.elsewhere:  # the unit holds its task's stream: the other writer uses another
            event = event.model_copy(update={"stream_id": f"planted-{uuid.uuid4()}"})
        async with self._other.begin() as other:  # committed before the unit goes on
            await other.events.append_numbered([event], topic=topic)
        self.planted.append(event.event_id)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        async with self._units.begin() as unit:
            append_applied = unit.append_applied
            append_numbered = unit.events.append_numbered
            append = unit.events.append

            async def raced_applied(
                events: Sequence[RecordedEvent], *, topic: str, source: str
            ) -> None:
                await self._plant(events, topic)
                await append_applied(events, topic=topic, source=source)

            async def raced_numbered(events: Sequence[RecordedEvent], *, topic: str) -> Any:
                await self._plant(events, topic)
                return await append_numbered(events, topic=topic)

            async def raced_append(events: Sequence[RecordedEvent], *, topic: str) -> Any:
                await self._plant(events, topic)
                return await append(events, topic=topic)

            unit.append_applied = raced_applied  # type: ignore[method-assign]
            unit.events.append_numbered = raced_numbered  # type: ignore[method-assign]
            unit.events.append = raced_append  # type: ignore[method-assign]
            yield unit


@contextlib.asynccontextmanager
async def raced(settings: BranchlineSettings, races: int) -> AsyncIterator[RacedUnits]:
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    other_pool = await open_read_model_pool(settings)
    try:
        yield RacedUnits(PostgresUnitsOfWork(pool), PostgresUnitsOfWork(other_pool), races)
    finally:
        await pool.close()
        await other_pool.close()


def two_surveys() -> list[RecordedEvent]:
    """Two clients' visits, each closing with a satisfaction survey (a recorded creation)."""
    history = History()
    at = now_utc() - timedelta(days=1)
    for n, client in enumerate(["C-RACE-1", "C-RACE-2"]):
        history.registered(client, at)
        history.visit(client, f"V-{n}", at + timedelta(minutes=5))
    return history.events


async def surveys(db: asyncpg.Connection[Any]) -> list[str]:
    rows = await db.fetch(
        "SELECT client_id FROM fu_tasks WHERE kind = 'satisfaction_survey' ORDER BY client_id"
    )
    return [r["client_id"] for r in rows]


async def test_a_batch_that_loses_races_runs_again_and_dead_letters_nothing(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """Two races: the batch's creations, then (old code: the event applied on its own, whose
    race made it a dead letter) its rerun's. Each rerun reads what the other writer stored."""
    events = two_surveys()
    dead = DeadLetterBox()
    async with raced(settings, races=2) as units:
        await handle_batch(relayed(events), units, dead, RECORDING)  # type: ignore[arg-type]
        assert units.races_left == 0  # both races were lost by the worker's units
    assert dead.sent == []
    applied = await db.fetchval(
        "SELECT count(*) FROM fu_applied_events WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )
    assert applied == len(events)
    assert await surveys(db) == ["C-RACE-1", "C-RACE-2"]
    stored = await db.fetchval(
        "SELECT count(*) FROM es_events WHERE type = 'followup.task_created' "
        "AND event_id = ANY($1::uuid[])",
        units.planted,
    )
    assert stored == 2  # each creation once: the other writer's, read again by the rerun


async def test_a_batch_losing_a_race_on_every_run_gives_up_after_its_reruns(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """Bounded: more lost races in a row than the reruns allow and the batch falls back to one
    unit per event (the conflict could be the batch's own); each is still applied."""
    history = History()
    at = now_utc() - timedelta(days=1)
    clients = [f"C-MANY-{n}" for n in range(CONFLICT_RERUNS + 2)]
    for n, client in enumerate(clients):
        history.registered(client, at)
        history.visit(client, f"V-{n}", at + timedelta(minutes=5))
    async with raced(settings, races=len(clients)) as units:
        outcome = await apply_batch(
            units,  # type: ignore[arg-type]
            _delivered(history.events),
            RECORDING,
            consumer=CONSUMER,
        )
    assert outcome.one_by_one
    assert outcome.failed == []
    assert await surveys(db) == sorted(clients)


def _delivered(events: list[RecordedEvent]) -> list[Delivered]:
    return [Delivered(e, SourcePosition("intake", n)) for n, e in enumerate(events, start=1)]


async def test_a_timer_that_loses_a_race_fires_instead_of_being_set_aside(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """The timer's event committed by another writer between the runner's look for it and its
    append: the timer is run again in a new savepoint, finds the event and is done (old code:
    dead-lettered as if it could never fire)."""
    history = History()
    opened = now_utc() - timedelta(minutes=10)
    history.registered("C-TIMER", opened - timedelta(hours=1))
    history.add(
        "consultation.opened",
        "C-TIMER",
        opened,
        {"consultation_id": "Q-1", "channel": "online", "question": "q"},
        channel=None,
    )
    async with followup_runtime(settings) as runtime:
        outcome = await apply_batch(
            runtime.context.units, _delivered(history.events), RECORDING, consumer=CONSUMER
        )
        assert outcome.applied == len(history.events)
        due = await db.fetchval("SELECT count(*) FROM fu_timers WHERE fire_at <= now()")
        assert due == 1
        async with raced(settings, races=1) as units:
            units.elsewhere = True
            context = dataclasses.replace(runtime.context, units=units)  # type: ignore[arg-type]
            fired = await run_due_timers(context, now_utc())
            assert units.races_left == 0
    assert (fired.fired, fired.dead) == (1, 0)
    assert await read_models.dead_timers(db) == []
    overdue = await db.fetchval(
        "SELECT count(*) FROM es_events WHERE type = 'followup.overdue' AND client_id = 'C-TIMER'"
    )
    assert overdue == 1  # the other writer's; the timer's rerun appended none of its own

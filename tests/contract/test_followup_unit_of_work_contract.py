"""One contract, two implementations of followup's unit of work (ADR-0013): the in-memory one
(used by the use cases' fast tests) and the PostgreSQL one must pass the same assertions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from branchline_followup.adapters.console_read_models import client_page_records
from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application.ports import FollowupUnitOfWork, UnitsOfWork
from branchline_followup.application.task_creations import creation_event
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_followup.domain import (
    HANDLED_EVENT_TYPES,
    DurableTimer,
    FollowupTask,
    TaskKind,
    TaskStatus,
    TimerKind,
)
from branchline_followup.domain.records import ClientFacts
from branchline_followup.domain.source_order import recorded_ms
from branchline_followup.domain.suitability import Holding, Rating
from branchline_followup.domain.tasks import new_task
from branchline_followup.domain.timers import timer_id_for
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.events.typed import decode
from branchline_shared.events.upcasting import NewerSchemaVersion
from branchline_shared.events.vocabulary import ProductRisk
from branchline_shared.eventstore.ports import ConcurrencyError
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.settings import BranchlineSettings

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TOPIC = "contract.followup"


class Wakes:
    """Counts the relay wake-ups a unit of work sends."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def a_client(client_id: str, **changes: object) -> ClientFacts:
    facts = ClientFacts(
        client_id=client_id,
        client_type="individual",
        rm_id="rm-1",
        branch_id="BR-001",
        lifecycle_stage="prospect",
        registered_at=T0,
        last_event_at=T0,
    )
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def a_task(
    client_id: str, *, opened_at: datetime = T0, kind: TaskKind = TaskKind.REVISIT
) -> FollowupTask:
    return new_task(
        kind=kind,
        source_event_id=uuid.uuid4(),
        client_id=client_id,
        branch_id="BR-001",
        assignee="rm-1",
        subject="client",
        opened_at=opened_at,
        due_at=opened_at + timedelta(days=3),
        deadline_profile="default",
    )


def a_timer(task: FollowupTask, kind: TimerKind, fire_at: datetime) -> DurableTimer:
    return DurableTimer(id=timer_id_for(task.id, kind), task_id=task.id, kind=kind, fire_at=fire_at)


def an_event(client_id: str, *, stream: str | None = None, version: int = 1) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type="client.registered",
        occurred_at=T0,
        recorded_at=T0,
        source="followup",
        actor=Actor(id="s-1", role="teller"),
        client_id=client_id,
        stream_id=stream or f"followup-task-{uuid.uuid4()}",
        stream_version=version,
        data={"client_type": "individual", "rm_id": "rm-1"},
    )


class Rolledback(Exception):
    pass


async def waiting_for_a_lock(
    holder: FollowupUnitOfWork, pid: int, running: asyncio.Task[Any]
) -> None:
    """Until the session ``pid`` waits for a lock (its marking statement, for the holder's
    client lock) or ``running`` ended without waiting. A fixed 0.2 s sleep could end on a
    loaded machine before the batch had sent the statement; the holder then committed first
    and the test passed without the wait it is about (#12)."""
    conn = holder._conn  # type: ignore[attr-defined]
    for _ in range(600):
        if running.done() or await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)", pid
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the session {pid} never waited for a lock")


async def stored_rows(conn: Any, events: list[RecordedEvent]) -> list[dict[str, Any]]:
    """What the store holds of ``events``, in their order: their rows but the id, position and
    transaction (the envelope without its id and stream), their outbox rows but the id and
    instant, and their streams' versions now."""
    rows = await conn.fetch(
        "SELECT e.stream_id, e.stream_version, e.type, e.client_id, e.occurred_at, "
        "e.recorded_at, e.submission_hash, (e.envelope - 'event_id' - 'stream_id')::text "
        "AS envelope, (e.envelope ->> 'stream_version')::int AS envelope_version, "
        "(e.envelope ->> 'event_id')::uuid = e.event_id AS envelope_id_kept, "
        "e.envelope ->> 'stream_id' = e.stream_id AS envelope_stream_kept, "
        "o.topic, o.message_key, o.published_at, s.version AS stream_now "
        "FROM es_events e JOIN es_outbox o USING (event_id) JOIN es_streams s USING (stream_id) "
        "JOIN unnest($1::uuid[]) WITH ORDINALITY AS w(event_id, n) USING (event_id) "
        "ORDER BY w.n",
        [e.event_id for e in events],
    )
    return [dict(r) for r in rows]


class FollowupUnitOfWorkContract:
    """Subclasses provide ``units`` (waking ``wakes``); every test holds for both."""

    async def test_a_commit_is_seen_by_the_next_unit(self, units: UnitsOfWork) -> None:
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-1", risk_tolerance="C3"))
        async with units.begin() as uow:
            facts = await uow.clients.get("c-1")
            assert facts is not None
            assert facts.risk_tolerance == "C3"
            assert await uow.clients.get("c-unknown") is None

    async def test_an_exception_rolls_back_every_part(
        self, units: UnitsOfWork, wakes: Wakes
    ) -> None:
        event = an_event("c-2")

        async def write_everything_then_fail() -> None:
            async with units.begin() as uow:
                await uow.clients.save(a_client("c-2"))
                await uow.tasks.save([a_task("c-2")])
                assert await uow.mark_applied(event, None)
                await uow.events.append([event], topic=TOPIC)
                raise Rolledback

        with pytest.raises(Rolledback):
            await write_everything_then_fail()
        async with units.begin() as uow:
            assert await uow.clients.get("c-2") is None
            assert await uow.tasks.open_of("c-2") == []
            assert await uow.events.find([event.event_id]) == {}
            assert await uow.mark_applied(event, None)  # not applied before
        assert wakes.count == 0

    async def test_an_event_is_applied_once(self, units: UnitsOfWork) -> None:
        event = an_event("c-3")
        async with units.begin() as uow:
            assert await uow.mark_applied(event, SourcePosition("intake", 7))
            assert not await uow.mark_applied(event, SourcePosition("intake", 7))
        async with units.begin() as uow:
            assert not await uow.mark_applied(event, None)

    async def test_a_batch_is_marked_applied_in_one_call_each_event_once(
        self, units: UnitsOfWork
    ) -> None:
        before, fresh, other = an_event("c-7"), an_event("c-7"), an_event("c-8")
        async with units.begin() as uow:
            assert await uow.mark_applied(before, None)
            marked = await uow.mark_applied_all(
                [
                    (before, None),
                    (fresh, SourcePosition("intake", 8)),
                    (fresh, SourcePosition("intake", 8)),  # a repeat within the batch
                    (other, None),
                ]
            )
            assert marked == {fresh.event_id, other.event_id}
            assert await uow.mark_applied_all([]) == set()
        async with units.begin() as uow:
            assert not await uow.mark_applied(fresh, None)
            assert await uow.mark_applied_all([(other, None)]) == set()

    async def test_an_applied_record_outlives_its_unit_only_if_committed(
        self, units: UnitsOfWork
    ) -> None:
        applied, rolled_back, never = an_event("c-9"), an_event("c-9"), an_event("c-10")
        async with units.begin() as uow:
            assert await uow.mark_applied(applied, None)

        async def apply_then_fail() -> None:
            async with units.begin() as uow:
                assert await uow.mark_applied(rolled_back, None)
                raise Rolledback

        with pytest.raises(Rolledback):
            await apply_then_fail()

        async def fresh_then_fail() -> set[uuid.UUID]:
            async with units.begin() as uow:
                found = await uow.mark_applied_all(
                    [(e, None) for e in (applied, rolled_back, never)]
                )
                raise Rolledback(found)

        with pytest.raises(Rolledback) as failed:
            await fresh_then_fail()
        assert failed.value.args[0] == {rolled_back.event_id, never.event_id}

    async def test_a_savepoint_rolls_back_alone(self, units: UnitsOfWork) -> None:
        async def fail_within(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.clients.save(a_client("c-5"))
                await uow.clients.save(a_client("c-4", rm_id="rm-other"))
                raise Rolledback

        async with units.begin() as uow:
            await uow.clients.save(a_client("c-4"))
            with pytest.raises(Rolledback):
                await fail_within(uow)
            async with uow.savepoint():
                await uow.clients.save(a_client("c-6"))
        async with units.begin() as uow:
            kept = await uow.clients.get("c-4")
            assert kept is not None
            assert kept.rm_id == "rm-1"
            assert await uow.clients.get("c-5") is None
            assert await uow.clients.get("c-6") is not None

    async def test_events_appended_and_marked_applied_are_applied_with_the_unit_only(
        self, units: UnitsOfWork
    ) -> None:
        """ADR-0003: an event the unit appends and marks applied (a task's creation) is
        applied once the unit commits, and not when the unit or its savepoint rolls back
        (#12: the PostgreSQL unit writes the record with its collected writes)."""
        kept, in_savepoint, in_failed = an_event("c-90"), an_event("c-90"), an_event("c-90")

        async def append_then_fail(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.events.append([in_savepoint], topic=TOPIC)
                await uow.mark_appended_applied([(in_savepoint, None)])
                raise Rolledback

        async with units.begin() as uow:
            (stored,) = await uow.events.append([kept], topic=TOPIC)
            await uow.mark_appended_applied(
                [(kept, SourcePosition("followup", stored.global_position))]
            )
            with pytest.raises(Rolledback):
                await append_then_fail(uow)

        async def fail_unit() -> None:
            async with units.begin() as uow:
                await uow.events.append([in_failed], topic=TOPIC)
                await uow.mark_appended_applied([(in_failed, None)])
                raise Rolledback

        with pytest.raises(Rolledback):
            await fail_unit()
        async with units.begin() as uow:
            fresh = await uow.mark_applied_all([(e, None) for e in (kept, in_savepoint, in_failed)])
            assert fresh == {in_savepoint.event_id, in_failed.event_id}  # kept was applied

    async def test_the_tasks_and_creations_events_caused_are_looked_up_at_once(
        self, units: UnitsOfWork
    ) -> None:
        """#12: a batch looks up the stored tasks and the recorded creations that its events
        caused in one call; a task found is then known without asking."""
        task = a_task("c-91")
        creation = creation_event(task, stream_version=1, now=T0)
        async with units.begin() as uow:
            await uow.tasks.save([task])
            await uow.events.append([creation], topic=TOPIC)
        async with units.begin() as uow:
            found = await uow.look_up_caused_by([task.source_event_id, uuid.uuid4()])
            assert [c.event_id for c in found] == [creation.event_id]
            assert await uow.look_up_caused_by([]) == []
            assert await uow.tasks.get_caused(task.id, task.source_event_id) == task
            assert await uow.tasks.get_caused(uuid.uuid4(), task.source_event_id) is None

    async def test_open_tasks_oldest_first_and_first_escalation_kept(
        self, units: UnitsOfWork
    ) -> None:
        later = a_task("c-7", opened_at=T0 + timedelta(hours=1))
        earlier = a_task("c-7", kind=TaskKind.SATISFACTION_SURVEY)
        closed = a_task("c-7", kind=TaskKind.CONSULTATION_RESPONSE).model_copy(
            update={"status": TaskStatus.DONE, "closed_at": T0}
        )
        async with units.begin() as uow:
            await uow.tasks.save([later, earlier, closed, a_task("c-other")])
            await uow.tasks.set_escalated(earlier.id, "sup-1")
            await uow.tasks.set_escalated(earlier.id, "sup-2")
        async with units.begin() as uow:
            assert [t.id for t in await uow.tasks.open_of("c-7")] == [earlier.id, later.id]
            escalated = await uow.tasks.get(earlier.id)
            assert escalated is not None
            assert escalated.escalated_to == "sup-1"
            assert await uow.tasks.get(closed.id) == closed

    async def test_timers_are_synced_claimed_and_dead_lettered(self, units: UnitsOfWork) -> None:
        task = a_task("c-8")
        soon = a_timer(task, TimerKind.OVERDUE, T0)
        later = a_timer(task, TimerKind.ESCALATE, T0 + timedelta(1))
        async with units.begin() as uow:
            await uow.tasks.save([task])
            await uow.timers.sync(task, [soon, later])
        async with units.begin() as uow:
            claimed = await uow.timers.claim_due(T0, 10)
            assert [(t.id, t.client_id, t.kind) for t in claimed] == [(soon.id, "c-8", "overdue")]
            assert await uow.timers.count_due(T0 + timedelta(2)) == 2
            await uow.timers.consume(soon.id, T0)
            await uow.timers.dead_letter(later.id, T0, "poison: " + "x" * 2000)
        async with units.begin() as uow:
            assert await uow.timers.count_due(T0 + timedelta(2)) == 0
            (dead,) = await uow.timers.dead()
            assert dead[0] == later.id
            assert dead[1].startswith("poison")
            assert len(dead[1]) == 1000

    async def test_a_moved_timer_is_armed_again_and_a_dropped_one_goes(
        self, units: UnitsOfWork
    ) -> None:
        task = a_task("c-9")
        timer = a_timer(task, TimerKind.OVERDUE, T0)
        event_id = uuid.uuid4()
        async with units.begin() as uow:
            await uow.timers.sync(task, [timer])
            await uow.timers.mark_fired(task.id, "overdue", T0, event_id)
            assert await uow.timers.count_due(T0) == 0
            moved = a_timer(task, TimerKind.OVERDUE, T0 + timedelta(hours=1))
            await uow.timers.sync(task, [moved])
            assert [t.fire_at for t in await uow.timers.claim_due(T0 + timedelta(2), 5)] == [
                moved.fire_at
            ]
            await uow.timers.sync(task, [])
            assert await uow.timers.count_due(T0 + timedelta(2)) == 0

    async def test_a_fired_timer_is_recorded_even_without_its_row(self, units: UnitsOfWork) -> None:
        task = a_task("c-10")
        timer = a_timer(task, TimerKind.ESCALATE, T0)
        async with units.begin() as uow:
            await uow.timers.record_fired(
                timer_id=timer.id,
                task_id=task.id,
                client_id="c-10",
                kind="escalate",
                fire_at=T0,
                event_id=uuid.uuid4(),
            )
            await uow.timers.sync(task, [timer])  # the same instant: stays fired
            assert await uow.timers.count_due(T0 + timedelta(1)) == 0

    async def test_an_overdue_event_of_a_moved_deadline_leaves_the_new_one_armed(
        self, units: UnitsOfWork
    ) -> None:
        task = a_task("c-14")
        moved = a_timer(task, TimerKind.OVERDUE, T0 + timedelta(days=15))
        async with units.begin() as uow:
            await uow.timers.sync(task, [moved])
            await uow.timers.record_fired(
                timer_id=moved.id,
                task_id=task.id,
                client_id="c-14",
                kind="overdue",
                fire_at=T0,
                event_id=uuid.uuid4(),
            )
            due = await uow.timers.claim_due(T0 + timedelta(days=16), 5)
            assert [(t.id, t.fire_at) for t in due] == [(moved.id, moved.fire_at)]

    async def test_an_escalation_is_recorded_on_a_timer_armed_for_another_instant(
        self, units: UnitsOfWork
    ) -> None:
        """D-08: an escalation is for good; a rebuild applies the reschedule before the
        escalation the worker fired at the old deadline, and must end where the worker did."""
        task = a_task("c-15")
        moved = a_timer(task, TimerKind.ESCALATE, T0 + timedelta(days=15))
        async with units.begin() as uow:
            await uow.timers.sync(task, [moved])
            await uow.timers.record_fired(
                timer_id=moved.id,
                task_id=task.id,
                client_id="c-15",
                kind="escalate",
                fire_at=T0,
                event_id=uuid.uuid4(),
            )
            assert await uow.timers.count_due(T0 + timedelta(days=16)) == 0
            await uow.timers.sync(task, [])  # escalated: no escalate timer is wanted
            assert await uow.timers.count_due(T0 + timedelta(days=16)) == 0

    async def test_due_stage_changes_in_order_and_dead_lettered(self, units: UnitsOfWork) -> None:
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-12", stage_changes_at=T0 + timedelta(hours=2)))
            await uow.clients.save(a_client("c-11", stage_changes_at=T0 + timedelta(hours=1)))
            await uow.clients.save(a_client("c-13", stage_changes_at=T0 + timedelta(days=9)))
        async with units.begin() as uow:
            due = T0 + timedelta(days=1)
            assert await uow.clients.claim_due_stage_changes(due, 10) == ["c-11", "c-12"]
            assert await uow.clients.count_due_stage_changes(due) == 2
            await uow.clients.dead_letter_stage_change("c-11", "poison")
        async with units.begin() as uow:
            assert await uow.clients.claim_due_stage_changes(T0 + timedelta(days=1), 10) == ["c-12"]
            cleared = await uow.clients.get("c-11")
            assert cleared is not None
            assert cleared.stage_changes_at is None

    async def test_holdings_follow_a_rerating_and_keep_the_earliest_sale(
        self, units: UnitsOfWork
    ) -> None:
        later = T0 + timedelta(days=2)
        async with units.begin() as uow:
            await uow.holdings.hold("c-14", "P-2", "R2", later)
            await uow.holdings.hold("c-14", "P-2", "R2", T0)  # an earlier sale, applied late
            await uow.holdings.hold("c-14", "P-1", "R1", T0)
            await uow.holdings.hold("c-15", "P-2", "R2", later)
            assert await uow.holdings.rerate("P-2", "R4") == [("c-14", T0), ("c-15", later)]
            assert await uow.holdings.rerate("P-none", "R4") == []
        async with units.begin() as uow:
            assert sorted(await uow.holdings.of_client("c-14"), key=lambda h: h.product_id) == [
                Holding("P-1", ProductRisk("R1")),
                Holding("P-2", ProductRisk("R4")),
            ]

    async def test_a_products_ratings_are_kept_once_each(self, units: UnitsOfWork) -> None:
        first = Rating(uuid.uuid4(), ProductRisk("R2"), T0)
        second = Rating(uuid.uuid4(), ProductRisk("R5"), T0 + timedelta(days=1))
        async with units.begin() as uow:
            await uow.holdings.record_rating("P-9", first)
            await uow.holdings.record_rating("P-9", second)
            await uow.holdings.record_rating("P-9", first)  # a redelivery
        async with units.begin() as uow:
            ratings = await uow.holdings.ratings_of("P-9")
            assert sorted(ratings, key=lambda r: r.effective_at) == [first, second]
            assert await uow.holdings.ratings_of("P-other") == []

    async def test_appended_events_are_found_and_wake_the_relay_after_commit(
        self, units: UnitsOfWork, wakes: Wakes
    ) -> None:
        stream = f"followup-task-{uuid.uuid4()}"
        first, second = an_event("c-16", stream=stream), an_event("c-16", stream=stream, version=2)
        async with units.begin() as uow:
            assert await uow.events.lock_streams([stream]) == {stream: 0}
            positions = await uow.events.append([first, second], topic=TOPIC)
            await uow.mark_applied_all([(first, None), (second, None)])  # applied where recorded
            assert [p.stream_version for p in positions] == [1, 2]
            assert positions[0].global_position < positions[1].global_position
            assert wakes.count == 0  # not before the commit
        assert wakes.count == 1
        async with units.begin() as uow:
            assert await uow.events.lock_streams([stream]) == {stream: 2}
            found = await uow.events.find([first.event_id, uuid.uuid4()])
            assert list(found) == [first.event_id]
            assert found[first.event_id].event.event_id == first.event_id
        assert wakes.count == 1  # a unit that appended nothing wakes no one

    async def test_an_event_is_read_as_recorded_at_its_schema_version(
        self, units: UnitsOfWork
    ) -> None:
        """#12: ``as_recorded`` gives what was written, a catalogue-v1 completion's free-text
        outcome as sent (a resend is compared with it), not the upcast reading (``other``)."""
        stream = f"followup-task-{uuid.uuid4()}"
        v1 = an_event("c-17", stream=stream).model_copy(
            update={
                "type": "followup.completed",
                "schema_version": 1,
                "data": {"task_id": str(uuid.uuid4()), "outcome": "rang, keeps the fund"},
            }
        )
        async with units.begin() as uow:
            await uow.events.lock_streams([stream])
            await uow.events.append([v1], topic=TOPIC)
        async with units.begin() as uow:
            recorded = await uow.events.as_recorded(v1.event_id)
            assert recorded is not None
            assert (recorded.schema_version, recorded.data) == (1, v1.data)
            assert await uow.events.as_recorded(uuid.uuid4()) is None

    async def test_events_are_read_back_upcast_to_the_current_catalogue_version(
        self, units: UnitsOfWork
    ) -> None:
        """#12: ``find`` reads an event written under an older catalogue version at the
        current one, its payload upcast (a v1 completion's free-text outcome as ``other``),
        in the unit that wrote it and after; ``as_recorded`` still gives it as written."""
        stream = f"followup-task-{uuid.uuid4()}"
        v1 = an_event("c-19", stream=stream).model_copy(
            update={
                "type": "followup.completed",
                "schema_version": 1,
                "data": {"task_id": str(uuid.uuid4()), "outcome": "rang, keeps the fund"},
            }
        )
        current = an_event("c-19", stream=stream, version=2)
        read = v1.model_copy(update={"schema_version": 2, "data": {**v1.data, "outcome": "other"}})
        async with units.begin() as uow:
            await uow.events.lock_streams([stream])
            await uow.events.append([v1, current], topic=TOPIC)
            within = await uow.events.find([v1.event_id, current.event_id])
        async with units.begin() as uow:
            after = await uow.events.find([v1.event_id, current.event_id])
            recorded = await uow.events.as_recorded(v1.event_id)
        for found in (within, after):
            assert found[v1.event_id].event == read
            assert found[current.event_id].event == current
        assert recorded == v1

    async def test_an_event_of_a_newer_catalogue_version_is_refused_when_read_back(
        self, units: UnitsOfWork
    ) -> None:
        """#12: an event written by a newer release (a version past this reader's catalogue)
        is not read as if current: ``find`` and the look-up of a task's recorded creation
        raise :class:`NewerSchemaVersion`; ``as_recorded`` gives it as written."""
        task = a_task("c-20")
        newer = creation_event(task, stream_version=1, now=T0)
        newer = newer.model_copy(update={"schema_version": newer.schema_version + 1})
        async with units.begin() as uow:
            await uow.events.append([newer], topic=TOPIC)
        async with units.begin() as uow:
            with pytest.raises(NewerSchemaVersion):
                await uow.events.find([newer.event_id])
        async with units.begin() as uow:
            with pytest.raises(NewerSchemaVersion):
                await uow.look_up_caused_by([task.source_event_id])
        async with units.begin() as uow:
            assert await uow.events.as_recorded(newer.event_id) == newer

    async def test_events_appended_numbered_follow_each_streams_version_in_order(
        self, units: UnitsOfWork, wakes: Wakes
    ) -> None:
        """#12: ``append_numbered`` locks the streams and numbers each event after its
        stream's version, in the order given, whatever version the event came with."""
        existing, new = f"followup-task-{uuid.uuid4()}", f"followup-task-{uuid.uuid4()}"
        async with units.begin() as uow:
            await uow.events.lock_streams([existing])
            await uow.events.append([an_event("c-18", stream=existing)], topic=TOPIC)
        given = [
            an_event("c-18", stream=new),
            an_event("c-18", stream=existing),  # at version 1: numbered 2
            an_event("c-18", stream=new),
        ]
        async with units.begin() as uow:
            stored = await uow.events.append_numbered(given, topic=TOPIC)
            assert wakes.count == 1  # the first unit's only
        assert wakes.count == 2
        assert [e.event_id for e, _ in stored] == [e.event_id for e in given]
        assert [(e.stream_id, e.stream_version) for e, _ in stored] == [
            (new, 1),
            (existing, 2),
            (new, 2),
        ]
        assert [(p.event_id, p.stream_id, p.stream_version) for _, p in stored] == [
            (e.event_id, e.stream_id, e.stream_version) for e, _ in stored
        ]
        assert stored[0][1].global_position < stored[1][1].global_position
        assert stored[1][1].global_position < stored[2][1].global_position
        assert [e.model_copy(update={"stream_version": 1}) for e, _ in stored] == [
            e.model_copy(update={"stream_version": 1}) for e in given
        ]  # nothing else changed
        async with units.begin() as uow:
            assert await uow.events.lock_streams([existing, new]) == {existing: 2, new: 2}
            found = await uow.events.find([e.event_id for e in given])
            assert {i: f.event for i, f in found.items()} == {e.event_id: e for e, _ in stored}

    async def test_events_appended_applied_are_numbered_stored_and_applied_once_committed(
        self, units: UnitsOfWork, wakes: Wakes
    ) -> None:
        """#12: ``append_applied`` is ``append_numbered`` then ``mark_appended_applied`` of
        each as stored (the PostgreSQL unit writes both with its collected writes): each
        event numbered after its stream's version in order, stored with its outbox row (the
        relay woken once the unit commits), recorded applied; none of it when the savepoint
        or the unit around it rolls back."""
        existing, new = f"followup-task-{uuid.uuid4()}", f"followup-task-{uuid.uuid4()}"
        async with units.begin() as uow:
            await uow.events.lock_streams([existing])
            await uow.events.append([an_event("c-18", stream=existing)], topic=TOPIC)
        given = [
            an_event("c-18", stream=new),
            an_event("c-18", stream=existing),  # at version 1: numbered 2
            an_event("c-18", stream=new),
        ]
        in_savepoint, in_failed = an_event("c-18"), an_event("c-18")

        async def append_then_fail(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.append_applied([in_savepoint], topic=TOPIC, source="followup")
                raise Rolledback

        async with units.begin() as uow:
            with pytest.raises(Rolledback):
                await append_then_fail(uow)
            await uow.append_applied(given, topic=TOPIC, source="followup")
            assert wakes.count == 1  # the first unit's only
        assert wakes.count == 2

        async def fail_unit() -> None:
            async with units.begin() as uow:
                await uow.append_applied([in_failed], topic=TOPIC, source="followup")
                raise Rolledback

        with pytest.raises(Rolledback):
            await fail_unit()
        async with units.begin() as uow:
            assert await uow.events.lock_streams([existing, new]) == {existing: 2, new: 2}
            found = await uow.events.find([e.event_id for e in (*given, in_savepoint, in_failed)])
            assert set(found) == {e.event_id for e in given}
            assert [
                (found[e.event_id].event.stream_id, found[e.event_id].event.stream_version)
                for e in given
            ] == [(new, 1), (existing, 2), (new, 2)]
            assert [found[e.event_id].position.stream_version for e in given] == [1, 2, 2]
            places = [found[e.event_id].position.global_position for e in given]
            assert places == sorted(places)
            assert [
                found[e.event_id].event.model_copy(update={"stream_version": 1}) for e in given
            ] == [e.model_copy(update={"stream_version": 1}) for e in given]
            fresh = await uow.mark_applied_all(
                [(e, None) for e in (*given, in_savepoint, in_failed)]
            )
            assert fresh == {in_savepoint.event_id, in_failed.event_id}  # given were applied

    async def test_a_taken_event_id_appended_applied_is_a_concurrency_error(
        self, units: UnitsOfWork
    ) -> None:
        event = an_event("c-19")
        async with units.begin() as uow:
            await uow.events.append_numbered([event], topic=TOPIC)

        async def again() -> None:
            async with units.begin() as uow:
                await uow.append_applied(
                    [event.model_copy(update={"stream_id": f"followup-task-{uuid.uuid4()}"})],
                    topic=TOPIC,
                    source="followup",
                )

        with pytest.raises(ConcurrencyError):
            await again()

    async def test_a_taken_event_id_appended_numbered_is_a_concurrency_error(
        self, units: UnitsOfWork
    ) -> None:
        event = an_event("c-19")
        async with units.begin() as uow:
            await uow.events.append_numbered([event], topic=TOPIC)

        async def again() -> None:
            async with units.begin() as uow:
                await uow.events.append_numbered(
                    [event.model_copy(update={"stream_id": f"followup-task-{uuid.uuid4()}"})],
                    topic=TOPIC,
                )

        with pytest.raises(ConcurrencyError):
            await again()

    async def test_a_taken_stream_version_is_a_concurrency_error(self, units: UnitsOfWork) -> None:
        stream = f"followup-task-{uuid.uuid4()}"
        async with units.begin() as uow:
            await uow.events.lock_streams([stream])
            (event,) = [an_event("c-17", stream=stream)]
            await uow.events.append([event], topic=TOPIC)
            await uow.mark_applied(event, None)

        async def append_at_version_one() -> None:
            async with units.begin() as uow:
                await uow.events.lock_streams([stream])
                await uow.events.append([an_event("c-17", stream=stream)], topic=TOPIC)

        with pytest.raises(ConcurrencyError):
            await append_at_version_one()

    async def test_privacy_state_follows_erasure_and_shredding(self, units: UnitsOfWork) -> None:
        requested = an_event("c-18").model_copy(
            update={"type": "client.erasure_requested", "data": {}}
        )
        shredded = an_event("c-18").model_copy(
            update={
                "type": "client.personal_data_shredded",
                "occurred_at": T0 + timedelta(days=30),
                "data": {},
            }
        )
        async with units.begin() as uow:
            assert await uow.privacy.state("c-18") is None
            await uow.privacy.apply(requested)
            state = await uow.privacy.state("c-18")
            assert state is not None
            assert state.restricted
            assert not state.shredded
            await uow.privacy.apply(shredded)
        async with units.begin() as uow:
            state = await uow.privacy.state("c-18")
            assert state is not None
            assert state.shredded
            assert state.erasure_event_id == requested.event_id
            assert await uow.privacy.values("c-18") == []

    async def test_the_journal_finds_an_event_that_arrives_after_a_later_one_of_its_store(
        self, units: UnitsOfWork
    ) -> None:
        """#13: the one check of the in-order path (ADR-0014)."""

        def at(client_id: str, seconds: int) -> RecordedEvent:
            return an_event(client_id).model_copy(
                update={"recorded_at": T0 + timedelta(seconds=seconds)}
            )

        first, second, third = at("c-40", 1), at("c-40", 2), at("c-40", 3)
        other_client = at("c-41", 0)
        async with units.begin() as uow:
            assert not await uow.journal.keep(first, SourcePosition("intake", 10))
            assert not await uow.journal.keep(third, SourcePosition("intake", 30))
            # another client, another store, no position: nothing to compare with
            assert not await uow.journal.keep(other_client, SourcePosition("intake", 1))
            assert not await uow.journal.keep(at("c-40", 0), SourcePosition("followup", 5))
            assert not await uow.journal.keep(at("c-40", 0), None)
        async with units.begin() as uow:
            assert await uow.journal.keep(second, SourcePosition("intake", 20))
            assert not await uow.journal.keep(second, SourcePosition("intake", 20))  # kept once
            kept = {j.place.event_id: j for j in await uow.journal.of_client("c-40")}
        assert len(kept) == 5
        assert kept[second.event_id].event == second  # the envelope as applied
        place = kept[second.event_id].place
        assert (place.source, place.global_position) == ("intake", 20)
        assert place.recorded_ms == recorded_ms(second.recorded_at)

    async def test_clearing_a_client_keeps_what_events_without_a_client_caused(
        self, units: UnitsOfWork
    ) -> None:
        own, foreign = a_task("c-42"), a_task("c-42", kind=TaskKind.SUITABILITY_REVIEW)
        mine = an_event("c-42").model_copy(update={"event_id": own.source_event_id})
        async with units.begin() as uow:
            await uow.journal.keep(mine, SourcePosition("intake", 1))
            await uow.clients.save(a_client("c-42"))
            await uow.clients.save(a_client("c-43"))
            await uow.tasks.save([own, foreign, a_task("c-43")])
            for task in (own, foreign):
                await uow.timers.sync(task, [a_timer(task, TimerKind.OVERDUE, task.due_at)])
            await uow.holdings.hold("c-42", "P-1", "R3", T0)
            await uow.journal.clear_read_models("c-42")
        async with units.begin() as uow:
            assert await uow.clients.get("c-42") is None
            assert await uow.clients.get("c-43") is not None
            assert [t.id for t in await uow.tasks.open_of("c-42")] == [foreign.id]
            assert len(await uow.tasks.open_of("c-43")) == 1
            assert await uow.holdings.of_client("c-42") == []
            due = await uow.timers.claim_due(T0 + timedelta(days=30), 10)
            assert [t.task_id for t in due if t.client_id == "c-42"] == [foreign.id]
            assert len(await uow.journal.of_client("c-42")) == 1  # the journal stays

    async def test_clients_held_ahead_read_and_write_what_they_would_when_asked(
        self, units: UnitsOfWork
    ) -> None:
        """#12: a batch holds its clients and reads ahead (facts, open tasks, the journal's
        latest places, tasks by id); what the unit then reads, finds late and saves is what
        it would be without, is committed with the unit, and a failed savepoint drops its
        part."""

        def at(client_id: str, seconds: int) -> RecordedEvent:
            return an_event(client_id).model_copy(
                update={"recorded_at": T0 + timedelta(seconds=seconds)}
            )

        task, fresh = a_task("c-60"), a_task("c-60", kind=TaskKind.SATISFACTION_SURVEY)
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-60"))
            await uow.tasks.save([task])
            assert not await uow.journal.keep(at("c-60", 3), SourcePosition("intake", 30))
        late, later, unplaced = at("c-60", 2), at("c-60", 4), at("c-61", 1)

        async def change_then_fail(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.clients.save(a_client("c-60", rm_id="rm-savepoint"))
                await uow.tasks.save([task.model_copy(update={"status": TaskStatus.DONE})])
                raise Rolledback

        async with units.begin() as uow:
            await uow.hold_clients_of(
                [
                    (later, SourcePosition("intake", 40)),
                    (late, SourcePosition("intake", 20)),
                    (unplaced, None),
                ]
            )
            assert [t.id for t in await uow.tasks.open_of("c-60")] == [task.id]
            assert await uow.clients.get("c-61") is None
            assert not await uow.journal.keep(later, SourcePosition("intake", 40))
            assert await uow.journal.keep(late, SourcePosition("intake", 20))  # behind both
            assert not await uow.journal.keep(unplaced, None)
            await uow.tasks.load([task.id, fresh.id])
            assert await uow.tasks.get(task.id) == task
            assert await uow.tasks.get(fresh.id) is None
            await uow.tasks.save([fresh])
            assert await uow.tasks.get(fresh.id) == fresh
            await uow.clients.save(a_client("c-61", rm_id="rm-9"))
            with pytest.raises(Rolledback):
                await change_then_fail(uow)
            facts = await uow.clients.get("c-60")
            assert facts is not None
            assert facts.rm_id == "rm-1"
            assert [t.id for t in await uow.tasks.open_of("c-60")] == sorted([task.id, fresh.id])
        async with units.begin() as uow:
            facts = await uow.clients.get("c-61")
            assert facts is not None
            assert facts.rm_id == "rm-9"
            assert len(await uow.journal.of_client("c-60")) == 3
            assert len(await uow.journal.of_client("c-61")) == 1
            assert [t.id for t in await uow.tasks.open_of("c-60")] == sorted([task.id, fresh.id])

    @pytest.mark.parametrize("marked", [False, True], ids=["held", "marked-then-held"])
    async def test_several_clients_held_ahead_each_read_as_when_asked(
        self, units: UnitsOfWork, marked: bool
    ) -> None:
        """#12: the read ahead of several clients gives each its own facts (or none), its
        own open tasks in their order (closed ones left out) and the latest place of each of
        its stores, as reading each when asked does; also when the batch's marking locked the
        clients and read them ahead (the PostgreSQL unit: in its statement, migration 018)."""

        def at(client_id: str, seconds: int, source: str = "intake") -> RecordedEvent:
            return an_event(client_id).model_copy(
                update={"recorded_at": T0 + timedelta(seconds=seconds), "source": source}
            )

        first, second = a_task("c-72"), a_task("c-72", opened_at=T0 + timedelta(hours=1))
        other = a_task("c-73", kind=TaskKind.SATISFACTION_SURVEY)
        done = a_task("c-73").model_copy(update={"status": TaskStatus.DONE})
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-72", rm_id="rm-72"))
            await uow.clients.save(a_client("c-73", rm_id="rm-73"))
            await uow.tasks.save([second, other, first, done])
            for event, position in [
                (at("c-72", 10), SourcePosition("intake", 100)),
                (at("c-72", 5, "followup"), SourcePosition("followup", 7)),
                (at("c-73", 20), SourcePosition("intake", 200)),
            ]:
                assert not await uow.journal.keep(event, position)
        async with units.begin() as uow:
            batch = [
                (at("c-72", 30), SourcePosition("intake", 300)),
                (at("c-72", 31, "followup"), SourcePosition("followup", 8)),
                (at("c-73", 32), SourcePosition("intake", 301)),
                (at("c-74", 33), SourcePosition("intake", 302)),
            ]
            if marked:
                fresh = await uow.mark_applied_all(batch, locking=[True] * len(batch))
                assert fresh == {e.event_id for e, _ in batch}
            await uow.hold_clients_of(batch)
            assert [t.id for t in await uow.tasks.open_of("c-72")] == [first.id, second.id]
            assert [t.id for t in await uow.tasks.open_of("c-73")] == [other.id]
            assert await uow.tasks.open_of("c-74") == []
            facts = [await uow.clients.get(c) for c in ("c-72", "c-73", "c-74")]
            assert [f.rm_id if f else None for f in facts] == ["rm-72", "rm-73", None]
            # behind the place kept of its own client and store only
            assert await uow.journal.keep(at("c-72", 9), SourcePosition("intake", 90))
            mine = SourcePosition("followup", 9)
            assert not await uow.journal.keep(at("c-72", 6, "followup"), mine)
            assert await uow.journal.keep(at("c-73", 19), SourcePosition("intake", 190))
            first_of_store = SourcePosition("followup", 1)
            assert not await uow.journal.keep(at("c-73", 1, "followup"), first_of_store)
            assert not await uow.journal.keep(at("c-74", 1), SourcePosition("intake", 1))


class TestMemoryFollowupUnitOfWork(FollowupUnitOfWorkContract):
    @pytest.fixture
    def wakes(self) -> Wakes:
        return Wakes()

    @pytest.fixture
    def units(self, wakes: Wakes) -> UnitsOfWork:
        return MemoryUnitsOfWork(on_commit=wakes)


@pytest.mark.integration
class TestPostgresFollowupUnitOfWork(FollowupUnitOfWorkContract):
    @pytest.fixture
    def wakes(self) -> Wakes:
        return Wakes()

    @pytest.fixture
    async def units(self, settings: BranchlineSettings, wakes: Wakes) -> AsyncIterator[UnitsOfWork]:
        await prepare_database(settings)
        pool = await open_read_model_pool(settings)
        yield PostgresUnitsOfWork(pool, on_commit=wakes)
        await pool.close()

    @pytest.mark.parametrize("ending", ["raises", "cancelled"])
    async def test_a_unit_begun_with_the_swap_lock_ends_as_a_transaction_does(
        self, units: UnitsOfWork, ending: str
    ) -> None:
        """#12: a unit's ``BEGIN`` travels with the swap lock (one statement); a unit that
        raises or is cancelled, within a savepoint or not, is rolled back (its writes and its
        locks gone, the connection out of any transaction, without asyncpg's reset), the next
        one on the same connection commits, and holds the swap lock shared until it ends."""
        pool = units._pool  # type: ignore[attr-defined]
        sent: list[str] = []
        lost, kept, task = an_event("c-98"), an_event("c-98"), a_task("c-98")
        loop = asyncio.get_running_loop()
        warnings: list[dict[str, Any]] = []
        in_savepoint = asyncio.Event()
        loop.set_exception_handler(lambda _, context: warnings.append(context))

        def log(query: LoggedQuery) -> None:
            sent.append(" ".join(query.query.split()))

        async def failing() -> None:
            async with units.begin() as uow:
                await uow.hold_clients_of([(lost, None)])
                assert await uow.mark_applied(lost, None)
                async with uow.savepoint():
                    await uow.tasks.save([task])
                    if ending == "cancelled":
                        in_savepoint.set()
                        await asyncio.sleep(10)
                    raise RuntimeError("refused")

        async with pool.acquire() as conn:
            conn.add_query_logger(log)
        try:
            if ending == "cancelled":
                running = asyncio.ensure_future(failing())
                await asyncio.wait_for(in_savepoint.wait(), 10)
                running.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await running
            else:
                with pytest.raises(RuntimeError):
                    await failing()
            async with units.begin() as uow:
                async with pool.acquire() as watcher:  # another connection of the pool
                    shared = await watcher.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND mode = 'ShareLock' AND granted"
                    )
                assert shared >= 1  # the swap lock, held shared by the unit
                assert await uow.mark_applied(kept, None)
                assert await uow.mark_applied(lost, None)  # its record was rolled back
        finally:
            loop.set_exception_handler(None)
            async with pool.acquire() as conn:
                conn.remove_query_logger(log)
                assert not conn.is_in_transaction()
        begins = [q for q in sent if q.startswith("BEGIN")]
        assert begins, sent
        assert all(q.startswith("BEGIN; SELECT pg_advisory_xact_lock_shared(") for q in begins)
        assert "ROLLBACK TO SAVEPOINT branchline_unit_1" in sent
        assert "ROLLBACK" in sent
        assert "COMMIT" in sent
        assert not [q for q in sent if "pg_advisory_unlock_all" in q]
        assert not [w for w in warnings if "active transaction" in str(w.get("message"))]
        async with units.begin() as uow:
            assert not await uow.mark_applied(kept, None)
            assert await uow.tasks.get(task.id) is None

    @pytest.mark.parametrize("held", [True, False], ids=["collected", "at-once"])
    async def test_timers_synced_again_at_their_instants_keep_their_rows(
        self, units: UnitsOfWork, held: bool
    ) -> None:
        """#12: a timer wanted again at the instant it has is left as it is (no new row
        version: the same ``xmin``), fired or not; a moved one is written and armed again. In
        a unit holding the task's client (the collected statement) and in one that does not."""
        task = a_task("c-97")
        overdue = a_timer(task, TimerKind.OVERDUE, T0)
        escalate = a_timer(task, TimerKind.ESCALATE, T0 + timedelta(1))
        pool = units._pool  # type: ignore[attr-defined]

        async def versions() -> dict[uuid.UUID, int]:
            rows = await pool.fetch(
                "SELECT id, xmin::text::bigint AS v FROM fu_timers WHERE task_id = $1", task.id
            )
            return {r["id"]: r["v"] for r in rows}

        async def sync(timers: list[DurableTimer]) -> None:
            async with units.begin() as uow:
                if held:
                    await uow.hold_clients_of([(an_event("c-97"), None)])
                await uow.tasks.save([task])
                await uow.timers.sync(task, timers)

        await sync([overdue, escalate])
        async with units.begin() as uow:
            await uow.timers.mark_fired(task.id, "overdue", T0, uuid.uuid4())
        before = await versions()
        assert set(before) == {overdue.id, escalate.id}
        await sync([overdue, escalate])
        assert await versions() == before
        async with units.begin() as uow:
            assert await uow.timers.count_due(T0 + timedelta(2)) == 1  # overdue stays fired

        moved = a_timer(task, TimerKind.OVERDUE, T0 + timedelta(hours=1))
        await sync([moved, escalate])
        after = await versions()
        assert after[moved.id] != before[moved.id]
        assert after[escalate.id] == before[escalate.id]
        async with units.begin() as uow:
            due = await uow.timers.claim_due(T0 + timedelta(2), 5)
            assert [(t.id, t.fire_at) for t in due] == [
                (moved.id, moved.fire_at),
                (escalate.id, escalate.fire_at),
            ]

    async def test_a_client_is_locked_once_per_unit_and_again_after_a_savepoint_failed(
        self, units: UnitsOfWork
    ) -> None:
        """#12: a unit takes a client's lock once (a batch, not each event); a savepoint that
        rolls back releases the locks taken in it, so the next lock_client takes it again."""

        async def lock_then_fail(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.lock_client("c-31")
                raise Rolledback

        async with units.begin() as uow:
            await uow.lock_client("c-30")
            await uow.lock_client("c-30")  # held already
            assert await uow.try_lock_client("c-30")
            with pytest.raises(Rolledback):
                await lock_then_fail(uow)
            async with units.begin() as other:
                assert not await other.try_lock_client("c-30")
                assert await other.try_lock_client("c-31")  # released with the savepoint
            await uow.lock_client("c-31")
            async with units.begin() as other:
                assert not await other.try_lock_client("c-31")

    async def test_marking_a_batch_locks_the_clients_of_the_flagged_events_recorded_now(
        self, units: UnitsOfWork
    ) -> None:
        """#12: the records and the clients' locks in one statement: the clients of the
        flagged events recorded now are locked (and not taken again by hold_clients_of), not
        those of unflagged events nor of events applied before."""
        applied_before = an_event("c-82")
        async with units.begin() as uow:
            await uow.mark_applied(applied_before, None)
        flagged, unflagged, also_flagged = an_event("c-80"), an_event("c-81"), an_event("c-83")
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(query.query)

        async with units.begin() as uow:
            events = [(flagged, None), (unflagged, None), (applied_before, None)]
            events += [(also_flagged, None), (flagged, None)]  # a repeat
            fresh = await uow.mark_applied_all(events, locking=[True, False, True, True, True])
            assert fresh == {flagged.event_id, unflagged.event_id, also_flagged.event_id}
            async with units.begin() as other:
                assert not await other.try_lock_client("c-80")
                assert not await other.try_lock_client("c-83")
                assert await other.try_lock_client("c-81")
                assert await other.try_lock_client("c-82")
            conn = uow._conn  # type: ignore[attr-defined]
            conn.add_query_logger(log)
            try:
                await uow.hold_clients_of([(flagged, None), (also_flagged, None)])
                await asyncio.sleep(0)
            finally:
                conn.remove_query_logger(log)
        assert len(sent) == 1, sent  # the read ahead only: the locks are held
        assert "pg_advisory_xact_lock" not in sent[0]

    async def test_a_batch_locking_as_it_marks_waits_for_the_holder_and_reads_its_commit(
        self, units: UnitsOfWork
    ) -> None:
        """#12, ADR-0013: the lock taken in the records' statement waits for a unit holding
        the client, and the read ahead (a later statement) sees what that unit committed."""
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-90", rm_id="rm-before"))
        event = an_event("c-90")
        marking_started = asyncio.Event()
        pids: list[int] = []

        async def batch() -> str | None:
            async with units.begin() as uow:
                pids.append(uow._conn.get_server_pid())  # type: ignore[attr-defined]
                marking_started.set()
                await uow.mark_applied_all([(event, None)], locking=[True])
                await uow.hold_clients_of([(event, None)])
                facts = await uow.clients.get("c-90")
                return None if facts is None else facts.rm_id

        async with units.begin() as holder:
            await holder.lock_client("c-90")
            await holder.clients.save(a_client("c-90", rm_id="rm-holder"))
            running = asyncio.create_task(batch())
            await marking_started.wait()
            await waiting_for_a_lock(holder, pids[0], running)
            assert not running.done()
        assert await asyncio.wait_for(running, 10) == "rm-holder"

    async def test_a_batch_of_new_events_reads_its_clients_ahead_in_its_marking_statement(
        self, units: UnitsOfWork
    ) -> None:
        """#12: marking a batch whose flagged events are all recorded now locks their clients
        and reads ahead what hold_clients_of would (facts, open tasks, the journal's latest
        places, the tasks and creations the deciding events caused) in ONE statement, through
        followup migration 018's function; hold_clients_of then sends nothing, nor does what
        the events read of them (one statement for the locks and one for the read before)."""
        task = a_task("c-77")
        creation = creation_event(task, stream_version=1, now=T0)
        seen = an_event("c-77").model_copy(update={"source": "intake"})
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-77", rm_id="rm-77"))
            await uow.tasks.save([task])
            await uow.events.append([creation], topic=TOPIC)
            await uow.journal.keep(seen, SourcePosition("intake", 5))
        deciding = an_event("c-77").model_copy(
            update={"event_id": task.source_event_id, "recorded_at": T0 + timedelta(seconds=9)}
        )
        other = an_event("c-78")
        batch = [(deciding, SourcePosition("intake", 9)), (other, SourcePosition("intake", 10))]
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(query.query)

        async with units.begin() as uow:
            conn = uow._conn  # type: ignore[attr-defined]
            warm = [(an_event("c-76"), SourcePosition("intake", 1))]
            await uow.mark_applied_all(warm, locking=[True])  # the statements prepared
            conn.add_query_logger(log)
            try:
                fresh = await uow.mark_applied_all(batch, locking=[True, True])
                await asyncio.sleep(0)  # the logger is called soon after each statement
                marking = list(sent)
                await uow.hold_clients_of(batch)
                facts = await uow.clients.get("c-77")
                assert facts is not None
                assert facts.rm_id == "rm-77"
                assert await uow.clients.get("c-78") is None
                assert [t.id for t in await uow.tasks.open_of("c-77")] == [task.id]
                assert await uow.tasks.open_of("c-78") == []
                assert await uow.journal.keep(  # behind the place read ahead
                    an_event("c-77").model_copy(update={"source": "intake"}),
                    SourcePosition("intake", 4),
                )
                found = await uow.look_up_caused_by([deciding.event_id, other.event_id])
                assert await uow.tasks.get_caused(task.id, deciding.event_id) == task
                await asyncio.sleep(0)
            finally:
                conn.remove_query_logger(log)
            async with units.begin() as another:
                assert not await another.try_lock_client("c-77")
                assert not await another.try_lock_client("c-78")
        assert fresh == {deciding.event_id, other.event_id}
        assert [c.event_id for c in found] == [creation.event_id]
        assert len(marking) == 1, marking
        assert "pg_advisory_xact_lock" in marking[0]
        assert "fu_read_ahead_held_v2(" in marking[0]
        assert sent == marking  # nothing read after the marking

    async def test_a_batch_reading_as_it_marks_waits_for_the_holder_and_reads_its_commit(
        self, units: UnitsOfWork
    ) -> None:
        """#12, ADR-0013: the marking statement's lock waits for a unit holding the client,
        and its read ahead (followup migration 018's VOLATILE function, called after the
        locks) sees what that unit committed: the facts, open tasks and journal place it
        changed, not the rows as they were when the statement began. (A read in the statement
        itself, or in a STABLE function, sees the rows of the statement's start.)"""
        before = a_task("c-91")
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-91", rm_id="rm-before"))
            await uow.tasks.save([before])
            seen = an_event("c-91").model_copy(update={"source": "intake"})
            await uow.journal.keep(seen, SourcePosition("intake", 5))
        added = a_task("c-91", opened_at=T0 + timedelta(hours=1))
        event = an_event("c-91").model_copy(update={"recorded_at": T0 + timedelta(seconds=50)})
        marking_started = asyncio.Event()
        pids: list[int] = []
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(query.query)

        async def batch() -> tuple[str | None, list[uuid.UUID], bool]:
            async with units.begin() as uow:
                warm = [(an_event("c-89"), SourcePosition("intake", 1))]
                await uow.mark_applied_all(warm, locking=[True])  # the statements prepared
                conn = uow._conn  # type: ignore[attr-defined]
                pids.append(conn.get_server_pid())
                marking_started.set()
                await uow.mark_applied_all([(event, SourcePosition("intake", 50))], locking=[True])
                conn.add_query_logger(log)
                try:
                    await uow.hold_clients_of([(event, SourcePosition("intake", 50))])
                    facts = await uow.clients.get("c-91")
                    open_tasks = [t.id for t in await uow.tasks.open_of("c-91")]
                    # behind the holder's place (40 s), not the one before (0 s)
                    between = T0 + timedelta(seconds=20)
                    late = await uow.journal.keep(
                        an_event("c-91").model_copy(update={"recorded_at": between}),
                        SourcePosition("intake", 30),
                    )
                    await asyncio.sleep(0)
                finally:
                    conn.remove_query_logger(log)
                return (None if facts is None else facts.rm_id), open_tasks, late

        async with units.begin() as holder:
            await holder.lock_client("c-91")
            await holder.clients.save(a_client("c-91", rm_id="rm-holder"))
            await holder.tasks.save([before.model_copy(update={"status": TaskStatus.DONE})])
            await holder.tasks.save([added])
            moved = an_event("c-91").model_copy(
                update={"source": "intake", "recorded_at": T0 + timedelta(seconds=40)}
            )
            await holder.journal.keep(moved, SourcePosition("intake", 40))
            running = asyncio.create_task(batch())
            await marking_started.wait()
            await waiting_for_a_lock(holder, pids[0], running)
            assert not running.done()
        rm_id, open_tasks, late = await asyncio.wait_for(running, 10)
        assert rm_id == "rm-holder"
        assert open_tasks == [added.id]
        assert late
        assert sent == []  # all of it read by the marking statement, after the lock

    async def test_a_units_collected_writes_are_one_statement(
        self, units: UnitsOfWork, settings: BranchlineSettings
    ) -> None:
        """#12: what a unit collected (a held client's facts, journal row, task and timers,
        its timeline row, the applied record of an event it appended) is written by ONE
        statement before it commits (five and one before); timers of a task synced twice
        are written in turn, as made (one statement cannot change a row twice)."""
        twice, once = a_task("c-92"), a_task("c-92")
        first = a_timer(twice, TimerKind.OVERDUE, T0)
        second = a_timer(twice, TimerKind.ESCALATE, T0 + timedelta(1))
        other = a_timer(once, TimerKind.OVERDUE, T0 + timedelta(2))
        held, appended = an_event("c-92"), an_event("c-92")
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(" ".join(query.query.split()))

        async with units.begin() as uow:
            conn = uow._conn  # type: ignore[attr-defined]
            await uow.hold_clients_of([(held, SourcePosition("intake", 4))])
            await uow.clients.save(a_client("c-92"))
            await uow.journal.keep(held, SourcePosition("intake", 4))
            await uow.tasks.save([twice, once])
            await uow.timers.sync(twice, [first])
            await uow.timers.sync(once, [other])
            await uow.activity.record_console(decode(held), "c-92")
            for kind, data in (
                ("consent_granted", {"purposes": ["marketing", "service"]}),
                ("consent_withdrawn", {"purposes": ["marketing"]}),
                ("risk_assessed", {"level": "C2"}),
            ):
                event = an_event("c-92").model_copy(update={"type": f"client.{kind}", "data": data})
                await uow.activity.record_console(decode(event), "c-92")
            (stored,) = await uow.events.append([appended], topic=TOPIC)
            await uow.mark_appended_applied(
                [(appended, SourcePosition("followup", stored.global_position))]
            )
            conn.add_query_logger(log)
            try:
                await uow.write_collected()  # type: ignore[attr-defined]  # as before COMMIT
                await asyncio.sleep(0)  # the logger is called soon after each statement
            finally:
                conn.remove_query_logger(log)
        writes = [q for q in sent if "INSERT INTO" in q]  # not asyncpg's type look-ups
        assert len(writes) == 1, writes
        for table in (
            "fu_clients",
            "fu_client_events",
            "fu_tasks",
            "fu_timers",
            "fu_client_timeline",
            "fu_client_consents",
            "fu_client_assessments",
            "fu_applied_events",
        ):
            assert f"INSERT INTO {table} " in writes[0]
        async with units.begin() as uow:
            assert await uow.clients.get("c-92") is not None
            assert {t.id for t in await uow.tasks.open_of("c-92")} == {twice.id, once.id}
            assert not await uow.mark_applied(appended, None)  # applied with the unit
            assert await uow.journal.keep(
                an_event("c-92").model_copy(update={"source": "intake", "recorded_at": T0}),
                SourcePosition("intake", 3),
            )  # the held event's row was written: an earlier one arrives late
            claimed = await uow.timers.claim_due(T0 + timedelta(3), 10)
            assert [t.id for t in claimed] == [first.id, other.id]
            await uow.hold_clients_of([(an_event("c-92"), None)])
            await uow.timers.sync(twice, [first])
            await uow.timers.sync(twice, [second])  # the same task again: in turn
        async with units.begin() as uow:
            claimed = await uow.timers.claim_due(T0 + timedelta(3), 10)
            assert [t.id for t in claimed] == [second.id, other.id]
        records = await client_page_records(units._pool, "c-92")  # type: ignore[attr-defined]
        assert len(records.timeline) == 4
        assert held.event_id in {r["event_id"] for r in records.timeline}
        assert [(r["purpose"], r["granted"]) for r in records.consents] == [
            ("marketing", False),
            ("service", True),
        ]
        assert records.assessment is not None
        assert records.assessment.level == "C2"

    async def test_a_units_collected_writes_keep_every_value_as_saved(
        self, units: UnitsOfWork
    ) -> None:
        """#12: the collected statement takes each part's rows as one JSON text; read back,
        amounts keep every digit and their scale, instants their microseconds (any offset),
        text its quotes, backslashes and non-ASCII letters, ids and ``None`` as they were."""
        offset = timezone(timedelta(hours=2, minutes=30))
        facts = a_client(
            "c-93",
            rm_id='rm "7" \\ Zoë',
            branch_id=None,
            identity_verified_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=offset),
            first_business_at=datetime(2026, 1, 3, tzinfo=UTC),
            assets_under_management=Decimal("12345678901234.50"),
            last_business_event_id=uuid.uuid4(),
        )
        task = a_task("c-93").model_copy(
            update={"subject": 'a "quoted" \\ subject, ü', "assignee": "rm-\u00e9"}
        )
        timer = a_timer(task, TimerKind.OVERDUE, datetime(2026, 12, 1, 0, 0, 0, 1, tzinfo=offset))
        async with units.begin() as uow:
            await uow.hold_clients_of([(an_event("c-93"), SourcePosition("intake", 1))])
            await uow.clients.save(facts)
            await uow.tasks.save([task])
            await uow.timers.sync(task, [timer])
        async with units.begin() as uow:
            read = await uow.clients.get("c-93")
            assert read == facts
            assert read is not None
            assert str(read.assets_under_management) == "12345678901234.50"
            assert read.identity_verified_at is not None
            assert read.identity_verified_at.microsecond == 678901
            assert await uow.tasks.get(task.id) == task
            (due,) = await uow.timers.claim_due(timer.fire_at, 10)
            assert (due.id, due.fire_at) == (timer.id, timer.fire_at)

    async def test_streams_are_created_and_locked_in_one_statement(
        self, units: UnitsOfWork
    ) -> None:
        """#12: locking a unit's streams creates the missing ones and locks them all in one
        statement (two before), with each one's version; another writer cannot take them."""
        existing, new = f"followup-task-{uuid.uuid4()}", f"followup-task-{uuid.uuid4()}"
        async with units.begin() as uow:
            assert await uow.events.lock_streams([existing]) == {existing: 0}
            await uow.events.append([an_event("c-93", stream=existing)], topic=TOPIC)
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(query.query)

        async with units.begin() as uow:
            conn = uow._conn  # type: ignore[attr-defined]
            conn.add_query_logger(log)
            try:
                versions = await uow.events.lock_streams([new, existing, new])
                await asyncio.sleep(0)
            finally:
                conn.remove_query_logger(log)
            assert versions == {existing: 1, new: 0}
            assert len(sent) == 1, sent
            async with units._pool.acquire() as other:  # type: ignore[attr-defined]
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.fetch(
                        "SELECT 1 FROM es_streams WHERE stream_id = $1 FOR UPDATE NOWAIT",
                        existing,
                    )  # (the new one is not visible to others before the unit commits)

    async def test_events_appended_numbered_are_stored_as_locked_and_appended_in_turn(
        self, units: UnitsOfWork
    ) -> None:
        """#12: ``append_numbered`` is one statement, and stores what ``lock_streams`` then
        ``append`` of the numbered events store: the events (their envelopes saying their
        versions), their outbox rows, the streams' versions; its streams stay locked."""
        existing, new = f"followup-task-{uuid.uuid4()}", f"followup-task-{uuid.uuid4()}"
        async with units.begin() as uow:
            await uow.events.lock_streams([existing])
            await uow.events.append([an_event("c-94", stream=existing)], topic=TOPIC)
        given = [an_event("c-94", stream=new), an_event("c-94", stream=existing)]
        given.append(
            given[1].model_copy(
                update={"event_id": uuid.uuid4(), "client_id": None, "product_id": "P-1"}
            )
        )
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(query.query)

        async with units.begin() as uow:
            conn = uow._conn  # type: ignore[attr-defined]
            conn.add_query_logger(log)
            try:
                stored = await uow.events.append_numbered(given, topic=TOPIC)
                await asyncio.sleep(0)
            finally:
                conn.remove_query_logger(log)
            assert len(sent) == 1, sent
            async with units._pool.acquire() as other:  # type: ignore[attr-defined]
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.fetch(
                        "SELECT 1 FROM es_streams WHERE stream_id = $1 FOR UPDATE NOWAIT",
                        existing,
                    )
        # the same events on two other streams, written by lock_streams and append in turn
        other_existing, other_new = f"followup-task-{uuid.uuid4()}", f"followup-task-{uuid.uuid4()}"
        async with units.begin() as uow:
            await uow.events.lock_streams([other_existing])
            await uow.events.append([an_event("c-94", stream=other_existing)], topic=TOPIC)
        renamed = {new: other_new, existing: other_existing}
        in_turn = [
            e.model_copy(update={"event_id": uuid.uuid4(), "stream_id": renamed[e.stream_id]})
            for e, _ in stored
        ]
        async with units.begin() as uow:
            assert await uow.events.lock_streams([other_existing, other_new]) == {
                other_existing: 1,
                other_new: 0,
            }
            await uow.events.append(in_turn, topic=TOPIC)
        async with units._pool.acquire() as conn:  # type: ignore[attr-defined]
            at_once_rows = await stored_rows(conn, [e for e, _ in stored])
            in_turn_rows = await stored_rows(conn, in_turn)
        assert at_once_rows == [
            {**r, "stream_id": {v: k for k, v in renamed.items()}[r["stream_id"]]}
            for r in in_turn_rows
        ]
        assert [
            (r["stream_version"], r["envelope_version"], r["stream_now"]) for r in at_once_rows
        ] == [(1, 1, 1), (2, 2, 3), (3, 3, 3)]

    async def test_held_clients_are_read_ahead_in_one_statement_after_their_locks(
        self, units: UnitsOfWork
    ) -> None:
        """#12: holding a batch's clients sends two statements: their locks, then ONE read of
        their facts, open tasks and the journal's latest places (three before); what the
        events then read of them sends none. The locks stay a statement of their own: a
        statement reads the snapshot taken when it starts, before a lock in it would wait."""
        task = a_task("c-70")
        seen = an_event("c-70").model_copy(update={"source": "intake"})
        async with units.begin() as uow:
            await uow.clients.save(a_client("c-70"))
            await uow.tasks.save([task])
            await uow.journal.keep(seen, SourcePosition("intake", 5))

        def later(client_id: str, position: int) -> tuple[RecordedEvent, SourcePosition]:
            event = an_event(client_id).model_copy(
                update={"source": "intake", "recorded_at": T0 + timedelta(seconds=position)}
            )
            return event, SourcePosition("intake", position)

        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(query.query)

        async with units.begin() as uow:
            conn = uow._conn  # type: ignore[attr-defined]
            await uow.hold_clients_of([later("c-69", 3)])  # the statements prepared
            conn.add_query_logger(log)
            try:
                await uow.hold_clients_of([later("c-70", 6), later("c-71", 7)])
                await asyncio.sleep(0)  # the logger is called soon after each statement
                held = list(sent)
                assert await uow.clients.get("c-70") is not None
                assert await uow.clients.get("c-71") is None
                assert [t.id for t in await uow.tasks.open_of("c-70")] == [task.id]
                assert await uow.tasks.open_of("c-71") == []
                assert not await uow.journal.keep(*later("c-70", 6))
                await asyncio.sleep(0)
            finally:
                conn.remove_query_logger(log)
        assert len(held) == 2, held
        assert "pg_advisory_xact_lock" in held[0]
        assert all(table in held[1] for table in ("fu_clients", "fu_tasks", "fu_client_events"))
        assert sent == held  # nothing read when asked

    async def test_what_held_deciding_events_caused_is_read_ahead_with_their_clients(
        self, units: UnitsOfWork
    ) -> None:
        """#12: holding a batch's clients also reads the stored tasks and the recorded
        creations that its events the rules decide on caused, in the same statement; the
        look-up that follows sends none, until the unit appends events (then it asks)."""
        task = a_task("c-75")
        creation = creation_event(task, stream_version=1, now=T0)
        async with units.begin() as uow:
            await uow.tasks.save([task])
            await uow.events.append([creation], topic=TOPIC)
        deciding = an_event("c-75").model_copy(update={"event_id": task.source_event_id})
        other = an_event("c-76")
        assert deciding.type in HANDLED_EVENT_TYPES
        sent: list[str] = []

        def log(query: LoggedQuery) -> None:
            sent.append(query.query)

        async with units.begin() as uow:
            conn = uow._conn  # type: ignore[attr-defined]
            await uow.hold_clients_of([(an_event("c-74"), None)])  # the statements prepared
            conn.add_query_logger(log)
            try:
                await uow.hold_clients_of([(deciding, None), (other, None)])
                await asyncio.sleep(0)
                held = list(sent)
                found = await uow.look_up_caused_by([deciding.event_id, other.event_id])
                assert await uow.tasks.get_caused(task.id, deciding.event_id) == task
                assert await uow.tasks.get_caused(uuid.uuid4(), other.event_id) is None
                await asyncio.sleep(0)
                assert sent == held  # nothing asked
                later = creation_event(
                    a_task("c-76").model_copy(update={"source_event_id": other.event_id}),
                    stream_version=1,
                    now=T0,
                )
                await uow.events.append_numbered([later], topic=TOPIC)
                again = await uow.look_up_caused_by([other.event_id])
                await asyncio.sleep(0)
            finally:
                conn.remove_query_logger(log)
        assert len(held) == 2, held
        assert "followup.task_created" in held[1]
        assert "source_event_id" in held[1]
        assert [c.event_id for c in found] == [creation.event_id]
        assert [c.event_id for c in again] == [later.event_id]
        assert len(sent) == len(held) + 2, sent  # the append, then the look-up asked

    async def test_the_timeline_collected_by_a_unit_is_written_with_it_but_a_failed_savepoints(
        self, units: UnitsOfWork, settings: BranchlineSettings
    ) -> None:
        """#12: a unit writes its console timeline rows together before it commits; those of
        a savepoint that rolled back are dropped with it."""
        kept, dropped = an_event("c-40"), an_event("c-40")

        async def record_then_fail(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.activity.record_console(decode(dropped), "c-40")
                raise Rolledback

        async with units.begin() as uow:
            await uow.activity.record_console(decode(kept), "c-40")
            with pytest.raises(Rolledback):
                await record_then_fail(uow)
        records = await client_page_records(units._pool, "c-40")  # type: ignore[attr-defined]
        assert [r["event_id"] for r in records.timeline] == [kept.event_id]

    async def test_the_consents_collected_by_a_unit_are_written_in_order_but_a_failed_savepoints(
        self, units: UnitsOfWork
    ) -> None:
        """#12: a unit writes its client pages' consent rows together before it commits, in
        the order its events made them; those of a savepoint that rolled back are dropped."""

        def consent(kind: str, minutes: int, *purposes: str) -> RecordedEvent:
            return an_event("c-41").model_copy(
                update={
                    "type": f"client.consent_{kind}",
                    "occurred_at": T0 + timedelta(minutes=minutes),
                    "data": {"purposes": list(purposes)},
                }
            )

        async def record_then_fail(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.activity.record_console(
                    decode(consent("granted", 3, "profiling")), "c-41"
                )
                raise Rolledback

        async with units.begin() as uow:
            for event in (
                consent("granted", 1, "marketing", "service"),
                consent("withdrawn", 2, "marketing", "service"),
                consent("granted", 2, "service"),  # the same instant: the later one wins
            ):
                await uow.activity.record_console(decode(event), "c-41")
            with pytest.raises(Rolledback):
                await record_then_fail(uow)
        records = await client_page_records(units._pool, "c-41")  # type: ignore[attr-defined]
        assert [(r["purpose"], r["granted"]) for r in records.consents] == [
            ("marketing", False),
            ("service", True),
        ]

    async def test_a_units_client_page_rows_end_as_their_upserts_in_turn_would_leave_them(
        self, units: UnitsOfWork
    ) -> None:
        """#12: a unit's consent and assessment rows, several of one row among them, end as
        the upserts run in turn would leave them: the later instant wins (the later event on
        the same instant), and a row already stored with a later instant stays."""

        def client_event(kind: str, minutes: int, data: dict[str, Any]) -> RecordedEvent:
            return an_event("c-43").model_copy(
                update={
                    "type": f"client.{kind}",
                    "occurred_at": T0 + timedelta(minutes=minutes),
                    "data": data,
                }
            )

        async def record(*events: RecordedEvent) -> None:
            async with units.begin() as uow:
                for event in events:
                    await uow.activity.record_console(decode(event), "c-43")

        await record(
            client_event("consent_granted", 5, {"purposes": ["marketing"]}),
            client_event("risk_assessed", 5, {"level": "C2"}),
        )
        await record(
            client_event("risk_assessed", 7, {"level": "C4"}),
            client_event("risk_assessed", 6, {"level": "C1"}),  # earlier: not kept
            client_event("risk_assessed", 7, {"level": "C3"}),  # the same instant, later
            client_event("consent_withdrawn", 4, {"purposes": ["marketing", "service"]}),
            client_event("consent_granted", 4, {"purposes": ["service"]}),
        )
        await record(client_event("risk_assessed", 6, {"level": "C1"}))  # stored +7 stays
        records = await client_page_records(units._pool, "c-43")  # type: ignore[attr-defined]
        assert [(r["purpose"], r["granted"]) for r in records.consents] == [
            ("marketing", True),  # stored at +5, the unit's at +4
            ("service", True),
        ]
        assert records.assessment is not None
        assert (records.assessment.level, records.assessment.assessed_at) == (
            "C3",
            T0 + timedelta(minutes=7),
        )

    async def test_a_locked_clients_facts_are_read_once_and_stay_what_the_row_holds(
        self, units: UnitsOfWork
    ) -> None:
        """#12: facts of a client whose lock the unit holds are kept once read or written;
        what a caller changes in its copy is not kept, a failed savepoint restores them, a
        re-projection's clearing forgets them."""

        async def save_then_fail(uow: FollowupUnitOfWork) -> None:
            async with uow.savepoint():
                await uow.clients.save(a_client("c-50", rm_id="rm-savepoint"))
                raise Rolledback

        async with units.begin() as uow:
            await uow.clients.save(a_client("c-50"))
        async with units.begin() as uow:
            await uow.lock_client("c-50")
            facts = await uow.clients.get("c-50")
            assert facts is not None
            facts.rm_id = "rm-changed-not-saved"
            again = await uow.clients.get("c-50")
            assert again is not None
            assert again.rm_id == "rm-1"
            await uow.clients.save(a_client("c-50", rm_id="rm-2"))
            with pytest.raises(Rolledback):
                await save_then_fail(uow)
            kept = await uow.clients.get("c-50")
            assert kept is not None
            assert kept.rm_id == "rm-2"
            await uow.journal.clear_read_models("c-50")
            assert await uow.clients.get("c-50") is None
        async with units.begin() as uow:
            assert await uow.clients.get("c-50") is None

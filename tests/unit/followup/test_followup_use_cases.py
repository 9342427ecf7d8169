"""followup's use cases on the in-memory unit of work (ADR-0013): the projection, an RM's
action and a timer firing, run without PostgreSQL or Kafka. The PostgreSQL side of the same
port is held to the same contract by tests/contract."""

from __future__ import annotations

import contextlib
import copy
import uuid
from dataclasses import replace
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
from followup_factories import MONDAY_9, RM_ID, an_event, count_payload_parses

from branchline_followup.adapters.memory_unit_of_work import (
    MemoryFollowupUnitOfWork,
    MemoryUnitsOfWork,
)
from branchline_followup.application import recording as recording_module
from branchline_followup.application.actions import (
    ClientNotWarned,
    NotYourTask,
    TaskClosed,
    complete_task,
    reassign_task,
    refusal_event_id,
)
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.clock import FixedOffset, ServiceClock
from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.projector import Projection, apply_event, project
from branchline_followup.application.reading import record_client_read
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.reprojection import ProductLocksWanted
from branchline_followup.application.task_creations import (
    PendingCreations,
    recorded_creations,
    task_created_event_id,
)
from branchline_followup.application.timers import run_due_timers
from branchline_followup.domain import (
    FollowupPolicy,
    FollowupTask,
    InvalidEventData,
    TaskKind,
    TaskStatus,
)
from branchline_followup.domain.records import PrivacyState
from branchline_followup.entrypoints import worker
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore
from branchline_shared.crypto.sealing import is_sealed
from branchline_shared.events import plain_messages, typed
from branchline_shared.events.catalogue import SatisfactionScores
from branchline_shared.events.envelope import Actor, RecordedEvent, Submitter
from branchline_shared.events.plain_messages import plain_event
from branchline_shared.events.typed import UnreadablePayload, decode
from branchline_shared.events.vocabulary import FollowupOutcome
from branchline_shared.kafka.consuming import RawMessage
from branchline_shared.kafka.wire import (
    SourcePosition,
    decode_current_event,
    encode_event,
    event_headers,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

TOPIC = "followup.events"


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def units(wakes: Wakes) -> MemoryUnitsOfWork:
    return MemoryUnitsOfWork(on_commit=wakes)


@pytest.fixture
def projection() -> Projection:
    return Projection(FollowupPolicy(), task_creations_topic=TOPIC)


def context(units: MemoryUnitsOfWork, projection: Projection, clock: FixedClock) -> FollowupContext:
    return FollowupContext(
        pool=None,  # type: ignore[arg-type]  # the use cases under test write through ``units``
        units=units,
        projection=projection,
        topic=TOPIC,
        clock=ServiceClock(FixedOffset(), clock, dev_mode=False),
    )


def registered(client_id: str = "C-10001") -> RecordedEvent:
    return an_event(
        "client.registered",
        {"client_type": "individual", "rm_id": RM_ID},
        at=MONDAY_9 - timedelta(days=1),
        client_id=client_id,
    )


def closed_visit(visit_id: str = "V-1") -> RecordedEvent:
    return an_event("visit.closed", {"visit_id": visit_id, "outcome": "normal"})


def refused_by_the_rules() -> RecordedEvent:
    """A completion whose payload is readable but whose task id is no UUID: the rules refuse
    it (InvalidEventData), in the middle of the projection."""
    return an_event("followup.completed", {"task_id": "not-a-uuid", "outcome": "other"})


async def the_survey(units: MemoryUnitsOfWork) -> FollowupTask:
    surveys = [t for t in units.state.tasks.values() if t.kind is TaskKind.SATISFACTION_SURVEY]
    assert len(surveys) == 1, surveys
    return surveys[0]


async def project_visit(units: MemoryUnitsOfWork, projection: Projection) -> FollowupTask:
    for event in (registered(), closed_visit()):
        assert await apply_event(units, decode(event), projection, SourcePosition("intake", 1))
    return await the_survey(units)


async def test_projecting_a_visit_makes_its_survey_due_with_timers_and_a_recorded_creation(
    units: MemoryUnitsOfWork, projection: Projection, wakes: Wakes
) -> None:
    survey = await project_visit(units, projection)
    assert survey.status is TaskStatus.OPEN
    assert survey.assignee == RM_ID
    assert survey.due_at == MONDAY_9 + FollowupPolicy().survey_within  # D-01b
    timers = [r for r in units.state.timers.values() if r.task_id == survey.id]
    assert {r.kind for r in timers} == {"overdue", "escalate"}
    # D-07: the creation is recorded in followup's store (and outbox), applied where recorded
    creations = {
        uuid.UUID(s.event.data["task_id"]): s.event
        for s in units.state.events.values()
        if s.event.type == "followup.task_created"
    }
    assert set(creations) == set(units.state.tasks)  # every task made due is recorded
    creation = creations[survey.id]
    assert (creation.event_id, TOPIC) in units.state.outbox
    assert creation.event_id in units.state.applied
    assert wakes.count == 2  # each unit that appended woke the relay (registration, visit)
    facts = units.state.clients["C-10001"]
    assert facts.last_contact_at == MONDAY_9


async def test_a_redelivered_event_changes_nothing(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    visit = closed_visit()
    await apply_event(units, decode(registered()), projection)
    assert await apply_event(units, decode(visit), projection)
    before = (dict(units.state.tasks), dict(units.state.events), list(units.state.activity))
    assert not await apply_event(units, decode(visit), projection)
    assert (dict(units.state.tasks), dict(units.state.events), list(units.state.activity)) == before


async def test_a_failing_event_leaves_no_trace(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    await apply_event(units, decode(registered()), projection)
    # readable, but the rules refuse it (after the unit marked it applied and wrote its
    # timeline row): whatever the rules raise, it rolls back
    broken = refused_by_the_rules()
    before = (dict(units.state.applied), dict(units.state.tasks), list(units.state.activity))
    with pytest.raises(InvalidEventData, match="task_id"):
        await apply_event(units, decode(broken), projection)
    assert (dict(units.state.applied), dict(units.state.tasks), list(units.state.activity)) == (
        before
    )


async def test_an_rm_completes_their_task_as_a_recorded_event(
    units: MemoryUnitsOfWork, projection: Projection, wakes: Wakes
) -> None:
    survey = await project_visit(units, projection)
    ctx = context(units, projection, FixedClock(MONDAY_9 + timedelta(hours=2)))
    done = await complete_task(
        ctx,
        survey.id,
        actor=Actor(id=RM_ID, role="rm"),
        may_act=lambda assignee: assignee == RM_ID,
        outcome=FollowupOutcome.CONTACTED,
    )
    assert done.status is TaskStatus.DONE
    assert done.closed_at == MONDAY_9 + timedelta(hours=2)
    completed = [
        s.event for s in units.state.events.values() if s.event.type == "followup.completed"
    ]
    assert len(completed) == 1
    assert completed[0].data["task_id"] == str(survey.id)
    assert completed[0].data["outcome"] == "contacted"
    assert completed[0].event_id in units.state.applied
    assert units.state.outcomes[survey.id] == "contacted"
    assert wakes.count == 3  # the creations (two units), then the completion


def completions_of(units: MemoryUnitsOfWork) -> list[RecordedEvent]:
    return [s.event for s in units.state.events.values() if s.event.type == "followup.completed"]


def keyed_context(units: MemoryUnitsOfWork, projection: Projection) -> FollowupContext:
    """Two hours after the visit, with a key store: a completion's note is sealed."""
    clock = FixedClock(MONDAY_9 + timedelta(hours=2))
    return replace(context(units, projection, clock), keys=InMemoryClientKeyStore())


SCORES = SatisfactionScores(
    attitude=90, professionalism=80, response_speed=70, risk_management=60, convenience=50
)


async def test_the_same_completion_sent_again_is_answered_with_the_task_as_it_is(
    units: MemoryUnitsOfWork, projection: Projection, wakes: Wakes
) -> None:
    """A completion whose answer was lost, sent again as it was (the same actor, outcome,
    note, next contact, scores), is answered with the done task: nothing is recorded twice
    and the unit commits nothing (old: TaskClosed, 409). The note is compared as written
    (it is stored sealed); the next contact as an instant, whatever its offset (#12)."""
    survey = await project_visit(units, projection)
    ctx = keyed_context(units, projection)
    rm = Actor(id=RM_ID, role="rm")
    nine = (MONDAY_9 + timedelta(days=7)).astimezone(timezone(timedelta(hours=8)))

    async def send(**changed: Any) -> FollowupTask:
        named: dict[str, Any] = {
            "actor": rm,
            "outcome": FollowupOutcome.CONTACTED,
            "note": "asked for a call back",
            "next_contact_at": nine,
            "scores": SCORES,
            **changed,
        }
        return await complete_task(
            ctx, survey.id, may_act=lambda assignee: assignee == RM_ID, **named
        )

    first = await send()
    [recorded] = completions_of(units)
    assert is_sealed(recorded.data["note"])
    commits = wakes.count
    again = await send(next_contact_at=nine.astimezone(UTC))
    assert again == first
    assert again.closed_by_event_id == recorded.event_id
    assert completions_of(units) == [recorded]
    assert wakes.count == commits  # rolled back: no COMMIT to lose


@pytest.mark.parametrize(
    "changed",
    [
        {"outcome": FollowupOutcome.OTHER},
        {"note": "asked for a call back!"},
        {"note": None},
        {"next_contact_at": MONDAY_9 + timedelta(days=8)},
        {"scores": None},
        {"client_warned": True},
        {"actor": Actor(id=RM_ID, role="supervisor")},
    ],
    ids=lambda changed: next(iter(changed)),
)
async def test_another_completion_of_a_completed_task_stays_refused(
    units: MemoryUnitsOfWork, projection: Projection, changed: dict[str, Any]
) -> None:
    survey = await project_visit(units, projection)
    ctx = keyed_context(units, projection)
    named: dict[str, Any] = {
        "actor": Actor(id=RM_ID, role="rm"),
        "outcome": FollowupOutcome.CONTACTED,
        "note": "asked for a call back",
        "next_contact_at": MONDAY_9 + timedelta(days=7),
        "scores": SCORES,
    }
    await complete_task(ctx, survey.id, may_act=lambda _a: True, **named)
    before = completions_of(units)
    with pytest.raises(TaskClosed):
        await complete_task(ctx, survey.id, may_act=lambda _a: True, **{**named, **changed})
    assert completions_of(units) == before


async def test_a_task_closed_by_another_event_refuses_a_completion(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    """Closed by something other than a completion (its survey answered): no completion was
    recorded to be sent again, so an RM's completion is refused as before."""
    survey = await project_visit(units, projection)
    done = survey.model_copy(
        update={
            "status": TaskStatus.DONE,
            "closed_at": MONDAY_9 + timedelta(hours=1),
            "closed_by_event_id": closed_visit("V-2").event_id,
            "close_reason": "survey answered",
        }
    )
    units.state.tasks[survey.id] = done
    ctx = context(units, projection, FixedClock(MONDAY_9 + timedelta(hours=2)))
    with pytest.raises(TaskClosed):
        await complete_task(
            ctx,
            survey.id,
            actor=Actor(id=RM_ID, role="rm"),
            may_act=lambda _a: True,
            outcome=FollowupOutcome.CONTACTED,
        )
    assert completions_of(units) == []


async def test_an_action_outside_the_callers_scope_changes_nothing(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    survey = await project_visit(units, projection)
    ctx = context(units, projection, FixedClock(MONDAY_9 + timedelta(hours=2)))
    events_before = dict(units.state.events)
    with pytest.raises(NotYourTask):
        await complete_task(
            ctx,
            survey.id,
            actor=Actor(id="rm-other", role="rm"),
            may_act=lambda assignee: assignee == "rm-other",
            outcome=FollowupOutcome.CONTACTED,
        )
    assert units.state.events == events_before
    assert units.state.tasks[survey.id].status is TaskStatus.OPEN


async def test_a_due_timer_fires_once_and_marks_the_task_overdue(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    survey = await project_visit(units, projection)
    after_due = survey.due_at + timedelta(seconds=1)
    ctx = context(units, projection, FixedClock(after_due))
    first = await run_due_timers(ctx, after_due)
    again = await run_due_timers(ctx, after_due)
    assert (first.fired, first.dead) == (1, 0)
    assert (again.fired, again.consumed) == (0, 0)
    overdue = [s.event for s in units.state.events.values() if s.event.type == "followup.overdue"]
    assert [e.data["task_id"] for e in overdue] == [str(survey.id)]
    assert overdue[0].occurred_at == survey.due_at  # the deadline instant, not the run's
    assert units.state.overdue[survey.id] == survey.due_at
    fired = [r for r in units.state.timers.values() if r.task_id == survey.id and r.fired_at]
    assert [r.fired_event_id for r in fired] == [overdue[0].event_id]


async def test_a_timer_that_cannot_fire_is_dead_lettered_alone(
    units: MemoryUnitsOfWork, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await project_visit(units, projection)
    await apply_event(units, decode(closed_visit("V-2")), projection)
    (second,) = [
        t
        for t in units.state.tasks.values()
        if t.kind is TaskKind.SATISFACTION_SURVEY and t.id != first.id
    ]
    after_due = first.due_at + timedelta(seconds=1)  # both surveys' overdue timers, nothing else
    assert second.due_at == first.due_at
    from branchline_followup.application import timers as timer_module

    real = timer_module.on_timer_fired

    def poison_first(task: FollowupTask, *args: Any) -> Any:
        if task.id == first.id:
            raise ValueError("poison")
        return real(task, *args)

    monkeypatch.setattr(timer_module, "on_timer_fired", poison_first)
    result = await run_due_timers(context(units, projection, FixedClock(after_due)), after_due)
    assert result.dead == 1
    assert result.fired == 1
    dead = [r for r in units.state.timers.values() if r.dead_reason]
    assert [(r.task_id, r.dead_reason) for r in dead] == [(first.id, "ValueError: poison")]
    assert (
        uuid.UUID(
            next(
                s.event.data["task_id"]
                for s in units.state.events.values()
                if s.event.type == "followup.overdue"
            )
        )
        == second.id
    )


async def test_a_batch_is_one_unit_a_repeat_changes_nothing_and_a_poison_fails_alone(
    units: MemoryUnitsOfWork, projection: Projection, wakes: Wakes
) -> None:
    visit = closed_visit()
    first = await apply_batch(
        units,
        [Delivered(registered()), Delivered(visit), Delivered(visit)],
        projection,
        consumer="test",
    )
    assert (first.applied, first.already_applied, first.failed, first.one_by_one) == (
        2,
        1,
        [],
        False,
    )
    assert wakes.count == 1  # one unit for the whole batch
    poison = refused_by_the_rules()
    other = registered("C-20002")
    second = await apply_batch(
        units, [Delivered(poison), Delivered(other)], projection, consumer="test"
    )
    assert second.one_by_one
    assert [index for index, _ in second.failed] == [0]  # the poison, with why
    assert second.applied == 1
    assert poison.event_id not in units.state.applied
    assert other.event_id in units.state.applied
    # one whose payload cannot be read fails alone where the batch decodes it, before any
    # unit: the others are applied together, and the reason names the field (D-04)
    unreadable = an_event("visit.closed", {"outcome": "normal"})  # no visit id
    last = registered("C-20003")
    third = await apply_batch(
        units, [Delivered(unreadable), Delivered(last)], projection, consumer="test"
    )
    assert not third.one_by_one
    assert [(index, type(why)) for index, why in third.failed] == [(0, UnreadablePayload)]
    assert "data.visit_id" in str(third.failed[0][1])
    assert (third.applied, unreadable.event_id in units.state.applied) == (1, False)
    assert last.event_id in units.state.applied


async def test_a_batch_decodes_each_event_once(
    units: MemoryUnitsOfWork, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # #12: the batch decodes each event where it receives it and hands the typed payload to
    # every helper (facts, rules, quality rows, suitability, service loop); they used to
    # decode it again each (a sale was parsed four times, a closed visit three times).
    parsed = count_payload_parses(monkeypatch)
    events = [
        registered(),
        closed_visit(),
        an_event("product.sold", {"product_id": "P-1", "amount": "1000.50"}),
        an_event("client.risk_assessed", {"level": "C3"}),
    ]
    outcome = await apply_batch(units, [Delivered(e) for e in events], projection, consumer="t")
    assert (outcome.applied, outcome.failed) == (len(events), [])
    assert sorted(parsed) == sorted(e.type for e in events)


async def test_the_worker_reads_a_plain_message_once_without_the_checks_that_cannot_refuse_it(
    units: MemoryUnitsOfWork, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # #12: a plain message's payload is read where its envelope is, by the checked validator
    # (plain_payload, as the rebuild reads it), not again with every check in the batch; a
    # message that is not plain (here an escape spelling "normal") still gets every check,
    # and both make the same read models.
    full: list[str] = []
    real_full = typed.parse_payload

    def counting(event_type: str, data: dict[str, Any], *, stored: bool = False) -> Any:
        full.append(event_type)
        return real_full(event_type, data, stored=stored)

    plain: list[str] = []
    real_plain = plain_messages.plain_payload

    def counting_plain(event: RecordedEvent) -> Any:
        plain.append(event.type)
        return real_plain(event)

    monkeypatch.setattr(typed, "parse_payload", counting)
    # (raising=False: on code without it, the batch's every-check parses tell)
    monkeypatch.setattr(worker, "plain_payload", counting_plain, raising=False)
    first, second = registered("C-10001"), registered("C-10002")
    at_first = an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"})
    at_second = an_event(
        "visit.closed", {"visit_id": "V-2", "outcome": "normal"}, client_id="C-10002"
    )
    escaped = relayed(at_second, 4)
    escaped = replace(escaped, value=(escaped.value or b"").replace(b'"normal"', b'"\\u006eormal"'))
    assert escaped.value != relayed(at_second, 4).value
    raws = [relayed(first, 1), relayed(second, 2), relayed(at_first, 3), escaped]
    await worker.handle_batch(raws, units, NoDeadLetters(), projection)  # type: ignore[arg-type]
    assert sorted(plain) == ["client.registered", "client.registered", "visit.closed"]
    assert full == ["visit.closed"]
    assert {e.event_id for e in (first, second, at_first, at_second)} <= units.state.applied.keys()
    surveys = sorted(
        t.client_id for t in units.state.tasks.values() if t.kind is TaskKind.SATISFACTION_SURVEY
    )
    assert surveys == ["C-10001", "C-10002"]


class CountedUnits:
    """The in-memory units, counting the units of work begun (the transactions)."""

    def __init__(self, units: MemoryUnitsOfWork) -> None:
        self.inner = units
        self.begun = 0

    def begin(self) -> contextlib.AbstractAsyncContextManager[FollowupUnitOfWork]:
        self.begun += 1
        return self.inner.begin()


class NoDeadLetters:
    async def send(self, raw: RawMessage, reason: str) -> None:
        raise AssertionError(f"dead-lettered: {reason}")


def relayed(event: RecordedEvent, position: int, *, requeued: bool = False) -> RawMessage:
    """``event`` as its store's relay publishes it (a re-queued row with its header)."""
    headers = event_headers(event, position, requeued=requeued)
    return RawMessage("t", 0, position, b"k", encode_event(event.model_dump(mode="json")), headers)


async def test_the_first_copy_of_an_own_event_is_skipped_unread_a_requeued_one_is_applied(
    units: MemoryUnitsOfWork, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#12: the relay's first copy of what followup recorded is acked unread (recorded as
    applied where recorded, ADR-0003): no decoding, no unit of work. A copy a repair
    re-queued (``requeued`` header) is decoded and applied like any event, its id deciding."""
    await apply_batch(
        units, [Delivered(registered()), Delivered(closed_visit())], projection, consumer="test"
    )
    own = [s.event for s in units.state.events.values()]
    assert own
    assert all(e.source == "followup" and e.event_id in units.state.applied for e in own)
    creation = own[0]
    # followup's own event the read models miss (swapped in by a rebuild from a broker that
    # had lost it): what the self-repair re-queues
    lost = creation.model_copy(update={"event_id": uuid.uuid4()})
    decoded: list[bytes | None] = []

    def counting(value: bytes | None) -> RecordedEvent:
        decoded.append(value)
        return decode_current_event(value)

    def counting_plain(value: bytes | None) -> RecordedEvent | None:
        decoded.append(value)
        return plain_event(value)

    # a message is decoded by the plain path or, failing it, by every check: either counts
    monkeypatch.setattr(worker, "decode_current_event", counting)
    monkeypatch.setattr(worker, "plain_event", counting_plain)
    counted = CountedUnits(units)
    state_before = copy.deepcopy(units.state)
    copies = [relayed(e, n) for n, e in enumerate([*own, lost], start=1)]
    await worker.handle_batch(copies, counted, NoDeadLetters(), projection)  # type: ignore[arg-type]
    assert (decoded, counted.begun) == ([], 0)
    assert units.state == state_before
    assert lost.event_id not in units.state.applied

    await worker.handle_batch(
        [relayed(lost, 99, requeued=True)],
        counted,
        NoDeadLetters(),  # type: ignore[arg-type]
        projection,
    )
    assert (len(set(decoded)), counted.begun) == (1, 1)
    assert lost.event_id in units.state.applied
    # another store's event with the same headers but its own source is never skipped
    fresh = registered("C-20003")
    await worker.handle_batch([relayed(fresh, 100)], counted, NoDeadLetters(), projection)  # type: ignore[arg-type]
    assert fresh.event_id in units.state.applied


async def test_a_requeued_copy_already_applied_changes_nothing(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    """A re-queued own copy the read models have (re-queued for another consumer) goes
    through one unit of work and is found applied by its id (ADR-0003)."""
    await apply_batch(
        units, [Delivered(registered()), Delivered(closed_visit())], projection, consumer="test"
    )
    creation = next(s.event for s in units.state.events.values())
    counted = CountedUnits(units)
    state_before = copy.deepcopy(units.state)
    await worker.handle_batch(
        [relayed(creation, 1, requeued=True)],
        counted,
        NoDeadLetters(),  # type: ignore[arg-type]
        projection,
    )
    assert counted.begun == 1
    assert units.state == state_before


async def test_a_read_of_a_client_is_recorded_as_applied_where_it_is_recorded(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    """Every event followup records is recorded as applied in its own transaction, a
    ``client.data_read`` too, though it changes no view (#12: its Kafka copy is then acked
    after one look-up, not applied by a transaction of the worker's)."""
    ctx = context(units, projection, FixedClock(MONDAY_9))
    who = Submitter(sub=RM_ID, roles=["rm"], branch_id="BR-001")
    await record_client_read(ctx, who, client_id="C-10001", route="GET /x", purpose=None)
    (read,) = [s.event for s in units.state.events.values()]
    assert read.type == "client.data_read"
    assert read.event_id in units.state.applied


async def test_creations_pending_in_a_unit_count_as_recorded_until_recorded_at_its_end(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    """#12: a batch records the creations its events decide at its end, together; until then
    a later event of the batch finds them as if each had been recorded at once."""
    visit = closed_visit()
    pending = PendingCreations()
    async with units.begin() as uow:
        for event in (registered(), visit):
            assert await project(uow, decode(event), projection, creations=pending)
        survey = await the_survey(units)
        assert not units.state.events  # nothing appended yet
        assert task_created_event_id(survey.id) in pending.events
        found = await recorded_creations(uow, [visit.event_id], pending=pending)
        assert set(found) == {survey.id}
        assert await recorded_creations(uow, [visit.event_id]) == {}
        recorded = await pending.record(uow, TOPIC)
        assert recorded == len(units.state.tasks)
        assert not pending.events
        assert set(await recorded_creations(uow, [visit.event_id])) == {survey.id}
    creation = units.state.events[task_created_event_id(survey.id)]
    assert creation.event.stream_version == 1
    assert (creation.event.event_id, TOPIC) in units.state.outbox
    assert units.state.applied[creation.event.event_id] == (
        "followup",
        creation.position.global_position,
    )


async def test_an_event_saves_and_rearms_exactly_the_tasks_it_changes(
    units: MemoryUnitsOfWork, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # #12: the projection no longer copies a client's open tasks before the rules run, and
    # skips the save when no step made a new mapping; an escalation (which changes a task
    # outside the rules) must still be saved, with its timers re-armed
    from branchline_followup.adapters import memory_unit_of_work

    survey = await project_visit(units, projection)
    saved: list[list[FollowupTask]] = []
    save = memory_unit_of_work._Tasks.save

    async def counted(self: Any, tasks: Any) -> None:
        saved.append(list(tasks))
        await save(self, tasks)

    monkeypatch.setattr(memory_unit_of_work._Tasks, "save", counted)

    arrived = an_event("visit.arrived", {"visit_id": "V-2"}, at=MONDAY_9 + timedelta(hours=1))
    assert await apply_event(units, decode(arrived), projection)
    assert saved == []
    assert units.state.tasks[survey.id] == survey

    escalated = an_event(
        "followup.escalated",
        {"task_id": str(survey.id), "supervisor_id": "sup-1"},
        at=MONDAY_9 + timedelta(hours=2),
    )
    assert await apply_event(units, decode(escalated), projection)
    assert [[t.id for t in tasks] for tasks in saved] == [[survey.id]]
    assert units.state.tasks[survey.id].escalated_to == "sup-1"
    armed = {
        r.kind for r in units.state.timers.values() if r.task_id == survey.id and r.fired_at is None
    }
    assert armed == {"overdue"}  # escalated: no escalate timer any more


async def test_a_completion_sent_again_for_a_restricted_client_is_not_opened_to_compare(
    units: MemoryUnitsOfWork, projection: Projection
) -> None:
    """After the client's erasure request their note is restricted (D-04): it is not
    unsealed to tell a resend, which stays refused as a closed task (#12)."""
    survey = await project_visit(units, projection)
    ctx = keyed_context(units, projection)
    named: dict[str, Any] = {
        "actor": Actor(id=RM_ID, role="rm"),
        "outcome": FollowupOutcome.CONTACTED,
        "note": "asked for a call back",
    }
    await complete_task(ctx, survey.id, may_act=lambda _a: True, **named)
    units.state.privacy[survey.client_id] = PrivacyState(
        survey.client_id, MONDAY_9 + timedelta(hours=1), uuid.uuid4(), None, None
    )
    before = completions_of(units)
    with pytest.raises(TaskClosed):
        await complete_task(ctx, survey.id, may_act=lambda _a: True, **named)
    assert completions_of(units) == before


def recorded_as_v1(units: MemoryUnitsOfWork, outcome: str) -> None:
    """The task's completion as catalogue v1 recorded it: ``outcome`` free text."""
    [completed] = completions_of(units)
    stored = units.state.events[completed.event_id]
    v1 = completed.model_copy(
        update={"schema_version": 1, "data": {**completed.data, "outcome": outcome}}
    )
    units.state.events[completed.event_id] = replace(stored, event=v1)


@pytest.mark.parametrize(
    ("recorded", "resent", "answered"),
    [
        ("rang the client, keeps the fund", FollowupOutcome.OTHER, False),
        ("other", FollowupOutcome.OTHER, True),
        ("contacted", FollowupOutcome.CONTACTED, True),
    ],
    ids=["free-text-read-as-other", "v1-code-other", "v1-code-contacted"],
)
async def test_a_completion_recorded_under_catalogue_v1_is_compared_as_it_was_sent(
    units: MemoryUnitsOfWork,
    projection: Projection,
    recorded: str,
    resent: FollowupOutcome,
    answered: bool,
) -> None:
    """A v1 completion's free-text outcome reads as ``other`` since v2; a resend is compared
    with what was sent. A v1 text that is a code is sent again as that code (answered);
    another text cannot be sent again (v2 takes codes only), and ``other`` now is a different
    completion: refused as a closed task (old: answered as the same, by the upcast) (#12)."""
    survey = await project_visit(units, projection)
    ctx = keyed_context(units, projection)
    named: dict[str, Any] = {"actor": Actor(id=RM_ID, role="rm"), "note": "asked for a call back"}
    await complete_task(ctx, survey.id, may_act=lambda _a: True, outcome=resent, **named)
    recorded_as_v1(units, recorded)
    before = completions_of(units)
    if answered:
        again = await complete_task(
            ctx, survey.id, may_act=lambda _a: True, outcome=resent, **named
        )
        assert again.status is TaskStatus.DONE
    else:
        with pytest.raises(TaskClosed):
            await complete_task(ctx, survey.id, may_act=lambda _a: True, outcome=resent, **named)
    assert completions_of(units) == before


def refusals_of(units: MemoryUnitsOfWork) -> list[RecordedEvent]:
    return [
        s.event for s in units.state.events.values() if s.event.type == "rule.violation_refused"
    ]


async def a_review(units: MemoryUnitsOfWork, projection: Projection) -> FollowupTask:
    """An open D-15 suitability review (the survey's task, of that kind)."""
    survey = await project_visit(units, projection)
    review = survey.model_copy(update={"kind": TaskKind.SUITABILITY_REVIEW})
    units.state.tasks[survey.id] = review
    return review


async def test_a_d15_refusal_sent_again_with_its_key_is_refused_again_recorded_once(
    units: MemoryUnitsOfWork, projection: Projection, wakes: Wakes
) -> None:
    """The same request (its key, actor and submission) refused by D-15 and sent again (its
    answer lost, ``outcome-unknown``, a double submit): refused again, its refusal recorded
    once and the resend's unit commits nothing (old: a second refusal recorded) (#12)."""
    review = await a_review(units, projection)
    ctx = keyed_context(units, projection)
    named: dict[str, Any] = {
        "actor": Actor(id=RM_ID, role="rm"),
        "outcome": FollowupOutcome.CONTACTED,
        "note": "not reached yet",
        "request_key": "form-1",
    }
    with pytest.raises(ClientNotWarned):
        await complete_task(ctx, review.id, may_act=lambda _a: True, **named)
    [refusal] = refusals_of(units)
    assert refusal.event_id == refusal_event_id(review.id, named["actor"], "form-1")
    commits = wakes.count
    with pytest.raises(ClientNotWarned) as again:
        await complete_task(ctx, review.id, may_act=lambda _a: True, **named)
    assert again.value.fields == ["client_warned"]
    assert refusals_of(units) == [refusal]
    assert wakes.count == commits  # rolled back: nothing to commit, nor to lose
    assert units.state.tasks[review.id].is_open


KEYED = {"request_key": "form-1"}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({}, {}),
        (KEYED, {"request_key": "form-2"}),
        (KEYED, {**KEYED, "outcome": FollowupOutcome.OTHER}),
        (KEYED, {**KEYED, "client_warned": False}),
        (KEYED, {**KEYED, "actor": Actor(id=RM_ID, role="supervisor")}),
    ],
    ids=["no-key", "another-key", "another-outcome", "client-warned-false", "another-caller"],
)
async def test_another_d15_attempt_is_recorded_again(
    units: MemoryUnitsOfWork,
    projection: Projection,
    first: dict[str, Any],
    second: dict[str, Any],
) -> None:
    """Not the same request: no key (nothing tells a resend from a second attempt), another
    key (another form shown), another submission under the key, another caller: each
    refusal is recorded, as before (#12)."""
    review = await a_review(units, projection)
    ctx = keyed_context(units, projection)
    named: dict[str, Any] = {
        "actor": Actor(id=RM_ID, role="rm"),
        "outcome": FollowupOutcome.CONTACTED,
    }
    for attempt in (first, second):
        with pytest.raises(ClientNotWarned):
            await complete_task(ctx, review.id, may_act=lambda _a: True, **{**named, **attempt})
    refusals = refusals_of(units)
    assert len(refusals) == 2
    assert len({r.event_id for r in refusals}) == 2


class ProductHeldOnce:
    """The in-memory twin's stand-in for another unit holding a product a re-projection in
    the unit wants (D-15, #12): the first unit's event raises ``ProductLocksWanted`` as
    ``reproject_client`` does; a unit that locked the product first applies it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wanted = 0
        self.locked_first: list[list[str]] = []
        locked: set[int] = set()
        real_project = recording_module.project

        async def lock_products(unit: Any, product_ids: Any) -> None:
            self.locked_first.append(list(product_ids))
            locked.add(id(unit))

        async def project(uow: Any, *args: Any, **kwargs: Any) -> bool:
            if id(uow) not in locked:
                self.wanted += 1
                raise ProductLocksWanted({"P-1"})
            return await real_project(uow, *args, **kwargs)

        monkeypatch.setattr(MemoryFollowupUnitOfWork, "lock_products", lock_products)
        monkeypatch.setattr(recording_module, "project", project)


async def test_an_rm_action_whose_products_are_wanted_is_run_again_taking_them_first(
    units: MemoryUnitsOfWork, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D-15 (#12): the API's unit meeting ``ProductLocksWanted`` is run again with the
    products locked first and completes (on the code before, it raised: a 503)."""
    survey = await project_visit(units, projection)
    held = ProductHeldOnce(monkeypatch)
    ctx = context(units, projection, FixedClock(MONDAY_9 + timedelta(hours=2)))
    done = await complete_task(
        ctx,
        survey.id,
        actor=Actor(id=RM_ID, role="rm"),
        may_act=lambda assignee: assignee == RM_ID,
        outcome=FollowupOutcome.CONTACTED,
    )
    assert done.status is TaskStatus.DONE
    assert (held.wanted, held.locked_first) == (1, [["P-1"]])
    assert len(completions_of(units)) == 1  # the given-up run left nothing
    moved = await reassign_task(
        ctx,
        (await a_second_task(units, projection)).id,
        actor=Actor(id="SUP-1", role="supervisor"),
        assignee="RM-2",
    )
    assert moved.assignee == "RM-2"
    assert (held.wanted, held.locked_first) == (2, [["P-1"], ["P-1"]])


async def a_second_task(units: MemoryUnitsOfWork, projection: Projection) -> FollowupTask:
    await apply_event(units, decode(closed_visit("V-2")), projection)
    return next(
        t
        for t in units.state.tasks.values()
        if t.is_open and t.kind is TaskKind.SATISFACTION_SURVEY
    )


async def test_a_timer_whose_products_are_wanted_fires_in_a_rerun_taking_them_first(
    units: MemoryUnitsOfWork, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D-15 (#12): the timer runner's round meeting ``ProductLocksWanted`` is run again with
    the products locked first; the timer fires (on the code before, it was dead-lettered)."""
    survey = await project_visit(units, projection)
    after_due = survey.due_at + timedelta(seconds=1)
    held = ProductHeldOnce(monkeypatch)
    result = await run_due_timers(context(units, projection, FixedClock(after_due)), after_due)
    assert (result.fired, result.dead, result.busy) == (1, 0, 0)
    assert (held.wanted, held.locked_first) == (1, [["P-1"]])
    overdue = [s.event for s in units.state.events.values() if s.event.type == "followup.overdue"]
    assert [e.data["task_id"] for e in overdue] == [str(survey.id)]
    assert not [r for r in units.state.timers.values() if r.dead_reason]

"""An in-memory implementation of followup's unit of work (ADR-0013), for fast tests of the
use cases: the same contract as the PostgreSQL one (``tests/contract``), no database.

Units run one at a time (a lock around each), which is stronger than the client locks the
port promises; a unit that raises restores the state it began with, a savepoint that raises
the state at its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from branchline_followup.adapters.personal_data import (
    ERASURE_REQUESTED,
    PERSONAL_DATA_SHREDDED,
    STAFF_ERASURE_REQUESTED,
    STAFF_GIFT_RECORDED,
    STAFF_PERSONAL_DATA_SHREDDED,
    sealed_values_of,
)
from branchline_followup.application.ports import JournaledEvent
from branchline_followup.domain import DurableTimer, FollowupTask, TaskStatus, TimerKind
from branchline_followup.domain.records import (
    ClientFacts,
    DueTimer,
    PrivacyState,
    SealedValue,
    StaffMember,
    StaffPrivacyState,
)
from branchline_followup.domain.source_order import SourcePlace, arrives_late, recorded_ms
from branchline_followup.domain.suitability import Holding, Rating
from branchline_shared.events.catalogue import EventType, RuleViolationRefused
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.sealing_keys import STAFF_KEY_PREFIX, staff_key_id
from branchline_shared.events.typed import Decoded, payload_as
from branchline_shared.events.upcasting import upcast
from branchline_shared.events.vocabulary import ProductRisk
from branchline_shared.eventstore.ports import ConcurrencyError, StoredEvent, StoredPosition
from branchline_shared.kafka.wire import SourcePosition


@dataclass
class TimerRow:
    id: uuid.UUID
    task_id: uuid.UUID
    client_id: str
    kind: str
    fire_at: datetime
    fired_at: datetime | None = None
    fired_event_id: uuid.UUID | None = None
    dead_reason: str | None = None


@dataclass
class MemoryState:
    """Everything a unit can change (tests may read it)."""

    applied: dict[uuid.UUID, tuple[str, int | None]] = field(default_factory=dict)
    """Applied event id → (store, global position) (what reconcile compares)."""
    clients: dict[str, ClientFacts] = field(default_factory=dict)
    stage_change_dead: dict[str, str] = field(default_factory=dict)
    tasks: dict[uuid.UUID, FollowupTask] = field(default_factory=dict)
    outcomes: dict[uuid.UUID, str] = field(default_factory=dict)
    overdue: dict[uuid.UUID, datetime] = field(default_factory=dict)
    timers: dict[uuid.UUID, TimerRow] = field(default_factory=dict)
    holdings: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)
    ratings: dict[str, dict[uuid.UUID, Rating]] = field(default_factory=dict)
    staff: dict[str, str | None] = field(default_factory=dict)
    training: dict[uuid.UUID, tuple[str, Decimal, datetime]] = field(default_factory=dict)
    activity: list[tuple[str, uuid.UUID, dict[str, Any]]] = field(default_factory=list)
    """(what, event id, values) of every page record, in the order written."""
    privacy: dict[str, PrivacyState] = field(default_factory=dict)
    personal_values: dict[str, list[SealedValue]] = field(default_factory=dict)
    staff_privacy: dict[str, StaffPrivacyState] = field(default_factory=dict)
    staff_gift_clients: dict[str, set[str]] = field(default_factory=dict)
    events: dict[uuid.UUID, StoredEvent] = field(default_factory=dict)
    stream_versions: dict[str, int] = field(default_factory=dict)
    outbox: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    journal: dict[uuid.UUID, JournaledEvent] = field(default_factory=dict)
    """The clients' applied events with their places (#13, ADR-0014)."""


class _Part:
    def __init__(self, state: Callable[[], MemoryState]) -> None:
        self._state = state

    @property
    def s(self) -> MemoryState:
        return self._state()


class _Clients(_Part):
    async def get(self, client_id: str) -> ClientFacts | None:
        facts = self.s.clients.get(client_id)
        return None if facts is None else replace(facts)

    async def save(self, facts: ClientFacts) -> None:
        self.s.clients[facts.client_id] = replace(facts)

    def _due(self, now: datetime) -> list[ClientFacts]:
        due = [
            c
            for c in self.s.clients.values()
            if c.stage_changes_at is not None and c.stage_changes_at <= now
        ]
        return sorted(due, key=lambda c: (c.stage_changes_at, c.client_id))

    async def claim_due_stage_changes(self, now: datetime, limit: int) -> list[str]:
        return [c.client_id for c in self._due(now)[:limit]]

    async def count_due_stage_changes(self, now: datetime) -> int:
        return len(self._due(now))

    async def dead_letter_stage_change(self, client_id: str, reason: str) -> None:
        if (facts := self.s.clients.get(client_id)) is not None:
            facts.stage_changes_at = None
            self.s.stage_change_dead[client_id] = reason[:1000]


class _Tasks(_Part):
    async def get(self, task_id: uuid.UUID) -> FollowupTask | None:
        return self.s.tasks.get(task_id)

    async def open_of(self, client_id: str) -> list[FollowupTask]:
        found = [
            t
            for t in self.s.tasks.values()
            if t.client_id == client_id and t.status is TaskStatus.OPEN
        ]
        return sorted(found, key=lambda t: (t.opened_at, t.id))

    async def save(self, tasks: Sequence[FollowupTask]) -> None:
        for task in tasks:
            self.s.tasks[task.id] = task

    async def load(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Everything is in memory already."""

    async def load_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> None:
        """Everything is in memory already."""

    async def get_caused(self, task_id: uuid.UUID, caused_by: uuid.UUID) -> FollowupTask | None:
        return self.s.tasks.get(task_id)

    async def set_outcome(self, task_id: uuid.UUID, outcome: str) -> None:
        if task_id in self.s.tasks:
            self.s.outcomes[task_id] = outcome

    async def set_overdue(self, task_id: uuid.UUID, at: datetime) -> None:
        if task_id in self.s.tasks:
            self.s.overdue.setdefault(task_id, at)

    async def set_escalated(self, task_id: uuid.UUID, to: str) -> None:
        task = self.s.tasks.get(task_id)
        if task is not None and task.escalated_to is None:
            self.s.tasks[task_id] = task.model_copy(update={"escalated_to": to})


class _Timers(_Part):
    async def sync_all(
        self, changes: Sequence[tuple[FollowupTask, Sequence[DurableTimer]]]
    ) -> None:
        for task, wanted in changes:
            await self.sync(task, wanted)

    async def sync(self, task: FollowupTask, wanted: Sequence[DurableTimer]) -> None:
        keep = {t.id for t in wanted}
        for timer_id, old in list(self.s.timers.items()):
            if old.task_id == task.id and old.fired_at is None and timer_id not in keep:
                del self.s.timers[timer_id]
        for timer in wanted:
            row = self.s.timers.get(timer.id)
            if row is None:
                self.s.timers[timer.id] = TimerRow(
                    timer.id, timer.task_id, task.client_id, timer.kind.value, timer.fire_at
                )
            elif row.fire_at != timer.fire_at:  # moved: armed again
                row.fire_at, row.fired_at, row.fired_event_id = timer.fire_at, None, None

    async def record_fired(
        self,
        *,
        timer_id: uuid.UUID,
        task_id: uuid.UUID,
        client_id: str,
        kind: str,
        fire_at: datetime,
        event_id: uuid.UUID,
    ) -> None:
        row = self.s.timers.get(timer_id)
        if row is None:
            self.s.timers[timer_id] = TimerRow(
                timer_id, task_id, client_id, kind, fire_at, fire_at, event_id
            )
        elif (row.fired_at is None or row.fired_event_id is None) and (
            row.fire_at == fire_at or kind == TimerKind.ESCALATE.value
        ):  # as :func:`.read_models.record_timer_fired`
            row.fire_at, row.fired_at, row.fired_event_id = fire_at, fire_at, event_id

    async def mark_fired(
        self, task_id: uuid.UUID, kind: str, at: datetime, event_id: uuid.UUID | None
    ) -> None:
        for row in self.s.timers.values():
            if row.task_id == task_id and row.kind == kind and row.fired_at is None:
                row.fired_at, row.fired_event_id = at, event_id

    def _due(self, now: datetime) -> list[TimerRow]:
        due = [r for r in self.s.timers.values() if r.fired_at is None and r.fire_at <= now]
        return sorted(due, key=lambda r: (r.fire_at, r.id))

    async def claim_due(self, now: datetime, limit: int) -> list[DueTimer]:
        return [DueTimer(r.id, r.task_id, r.client_id, r.kind, r.fire_at) for r in self._due(now)][
            :limit
        ]

    async def count_due(self, now: datetime) -> int:
        return len(self._due(now))

    async def consume(self, timer_id: uuid.UUID, at: datetime) -> None:
        row = self.s.timers.get(timer_id)
        if row is not None and row.fired_at is None:
            row.fired_at = at

    async def dead_letter(self, timer_id: uuid.UUID, at: datetime, reason: str) -> None:
        row = self.s.timers.get(timer_id)
        if row is not None:
            row.fired_at, row.dead_reason = at, reason[:1000]

    async def dead(self) -> list[tuple[uuid.UUID, str]]:
        return sorted(
            (r.id, r.dead_reason) for r in self.s.timers.values() if r.dead_reason is not None
        )


class _Holdings(_Part):
    async def hold(
        self, client_id: str, product_id: str, product_risk: str, since: datetime
    ) -> None:
        held = self.s.holdings.get((client_id, product_id))
        self.s.holdings[(client_id, product_id)] = (
            product_risk,
            min(held[1], since) if held else since,
        )

    async def of_client(self, client_id: str) -> list[Holding]:
        return [
            Holding(product_id, ProductRisk(risk))
            for (holder, product_id), (risk, _) in sorted(self.s.holdings.items())
            if holder == client_id
        ]

    async def rerate(self, product_id: str, product_risk: str) -> list[tuple[str, datetime]]:
        holders = sorted((c, s) for (c, p), (_, s) in self.s.holdings.items() if p == product_id)
        for client_id, since in holders:
            self.s.holdings[(client_id, product_id)] = (product_risk, since)
        return holders

    async def record_rating(self, product_id: str, rating: Rating) -> None:
        self.s.ratings.setdefault(product_id, {}).setdefault(rating.event_id, rating)

    async def ratings_of(self, product_id: str) -> list[Rating]:
        return list(self.s.ratings.get(product_id, {}).values())


class _Activity(_Part):
    def _add(self, what: str, event: Decoded, **values: Any) -> None:
        self.s.activity.append((what, event.envelope.event_id, values))

    async def record_console(self, event: Decoded, client_id: str) -> None:
        self._add("console", event, client_id=client_id, type=event.envelope.type)

    async def record_refusal(self, event: Decoded) -> None:
        if event.envelope.type == EventType.RULE_VIOLATION_REFUSED:
            self._add("refusal", event, rule=payload_as(event, RuleViolationRefused).rule)

    async def record_visit(self, event: Decoded, rm_id: str | None, **columns: Any) -> None:
        self._add("visit", event, rm_id=rm_id, **columns)

    async def record_survey(
        self,
        event: Decoded,
        rm_id: str | None,
        visit_id: str | None,
        scores: dict[str, float],
    ) -> None:
        self._add("survey", event, rm_id=rm_id, visit_id=visit_id, scores=scores)

    async def record_complaint_received(
        self, event: Decoded, rm_id: str | None, severity: str, topic: str | None
    ) -> None:
        self._add("complaint", event, rm_id=rm_id, severity=severity, topic=topic)

    async def record_complaint_step(self, event: Decoded, status: str, **columns: Any) -> None:
        self._add("complaint_step", event, status=status, **columns)

    async def record_service_loop_facts(self, event: Decoded, rm_id: str | None) -> None:
        self._add("service_loop", event, rm_id=rm_id, type=event.envelope.type)

    async def record_staff(self, staff_id: str, branch_id: str | None) -> None:
        self.s.staff[staff_id] = branch_id or self.s.staff.get(staff_id)

    async def record_training(
        self, event: Decoded, staff_id: str, hours: Decimal, completed_at: datetime
    ) -> None:
        self.s.training.setdefault(event.envelope.event_id, (staff_id, hours, completed_at))


class _Privacy(_Part):
    async def apply(self, event: RecordedEvent) -> None:
        client_id = event.client_id or event.subject_id
        state = self.s.privacy.get(client_id) or PrivacyState(client_id, None, None, None, None)
        if event.type == PERSONAL_DATA_SHREDDED:
            if state.shredded_at is None:
                state = replace(state, shredded_at=event.occurred_at, shred_event_id=event.event_id)
            self.s.privacy[client_id] = state
            self.s.personal_values.pop(client_id, None)  # not even ciphertext stays
            return
        if event.type == ERASURE_REQUESTED:
            if state.erasure_requested_at is None:
                state = replace(
                    state,
                    erasure_requested_at=event.occurred_at,
                    erasure_event_id=event.event_id,
                )
            self.s.privacy[client_id] = state
        values = sealed_values_of(event)
        if not values or state.shredded:
            return
        kept = self.s.personal_values.setdefault(client_id, [])
        kept.extend(v for v in values if v not in kept)

    async def state(self, client_id: str) -> PrivacyState | None:
        return self.s.privacy.get(client_id)

    async def pending_erasures(self) -> list[PrivacyState]:
        pending = [
            p
            for p in self.s.privacy.values()
            if p.erasure_requested_at is not None and p.shredded_at is None
        ]
        return sorted(pending, key=lambda p: (p.erasure_requested_at, p.client_id))

    async def values(self, client_id: str) -> list[SealedValue]:
        return sorted(
            self.s.personal_values.get(client_id, []),
            key=lambda v: (v.occurred_at, v.event_id, v.path, v.sub_key),
        )

    async def apply_staff(self, event: RecordedEvent) -> None:
        staff_id = event.staff_id
        if staff_id is None:
            return
        state = self.s.staff_privacy.get(staff_id)
        key_id = staff_key_id(staff_id)
        if event.type == STAFF_PERSONAL_DATA_SHREDDED:
            self.s.personal_values.pop(key_id, None)
        elif (values := sealed_values_of(event)) and (state is None or not state.shredded):
            kept = self.s.personal_values.setdefault(key_id, [])
            kept.extend(v for v in values if v not in kept)
        if event.type == STAFF_ERASURE_REQUESTED:
            raw = event.data.get("employment_ended_at")
            ended = None if raw is None else datetime.fromisoformat(str(raw))
            if state is None:
                state = StaffPrivacyState(staff_id, event.occurred_at, event.event_id, ended)
            else:
                state = replace(
                    state,
                    employment_ended_at=ended or state.employment_ended_at,
                    erasure_requested_at=min(state.erasure_requested_at, event.occurred_at),
                )
            self.s.staff_privacy[staff_id] = state
        elif event.type == STAFF_PERSONAL_DATA_SHREDDED:
            if state is None:  # applied before its request (a rebuild's order)
                request_id = uuid.UUID(str(event.data["erasure_event_id"]))
                state = StaffPrivacyState(staff_id, event.occurred_at, request_id, None)
            if state.shredded_at is None:
                state = replace(state, shredded_at=event.occurred_at, shred_event_id=event.event_id)
            self.s.staff_privacy[staff_id] = state
        elif event.type == STAFF_GIFT_RECORDED and isinstance(event.data.get("client_id"), str):
            self.s.staff_gift_clients.setdefault(staff_id, set()).add(event.data["client_id"])

    async def staff_state(self, staff_id: str) -> StaffPrivacyState | None:
        state = self.s.staff_privacy.get(staff_id)
        if state is None:
            return None
        return replace(
            state,
            branch_id=self.s.staff.get(staff_id),
            gift_clients=tuple(sorted(self.s.staff_gift_clients.get(staff_id, ()))),
        )

    async def staff_member(self, staff_id: str) -> StaffMember | None:
        if staff_id not in self.s.staff:
            return None
        return StaffMember(staff_id, self.s.staff[staff_id])

    async def pending_staff_erasures(self) -> list[StaffPrivacyState]:
        pending = [
            s
            for staff_id in self.s.staff_privacy
            if (s := await self.staff_state(staff_id)) is not None and not s.shredded
        ]
        return sorted(pending, key=lambda p: (p.erasure_requested_at, p.staff_id))


class _Journal(_Part):
    async def keep(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        client_id = event.client_id
        if client_id is None or event.event_id in self.s.journal:
            return False
        place = SourcePlace(
            event.event_id,
            position.source if position else event.source,
            recorded_ms(event.recorded_at),
            position.global_position if position else None,
        )
        kept = [j.place for j in self.s.journal.values() if j.event.client_id == client_id]
        self.s.journal[event.event_id] = JournaledEvent(event, place)
        return arrives_late(place, kept)

    async def of_client(self, client_id: str) -> list[JournaledEvent]:
        return [j for j in self.s.journal.values() if j.event.client_id == client_id]

    async def clear_read_models(self, client_id: str) -> None:
        s = self.s
        own = {j.place.event_id for j in await self.of_client(client_id)}
        removed = {
            task_id
            for task_id, task in s.tasks.items()
            if task.client_id == client_id and task.source_event_id in own
        }
        kept = {t for t, task in s.tasks.items() if task.client_id == client_id} - removed
        for task_id in removed:
            del s.tasks[task_id]
            s.outcomes.pop(task_id, None)
            s.overdue.pop(task_id, None)
        s.timers = {
            i: r for i, r in s.timers.items() if r.client_id != client_id or r.task_id in kept
        }
        s.clients.pop(client_id, None)
        s.stage_change_dead.pop(client_id, None)
        s.holdings = {k: v for k, v in s.holdings.items() if k[0] != client_id}
        s.activity = [a for a in s.activity if a[0] == "refusal" or a[1] not in own]
        s.privacy.pop(client_id, None)
        if not client_id.startswith(STAFF_KEY_PREFIX):  # kept by staff events (no journal)
            s.personal_values.pop(client_id, None)


class _Events(_Part):
    appended = 0

    # Read back as PostgreSQL's unit reads them (#12): upcast to the current catalogue
    # version (a newer one refused); kept as written, and ``as_recorded`` gives that.
    async def find(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]:
        events = self.s.events
        return {
            i: replace(events[i], event=upcast(events[i].event)) for i in event_ids if i in events
        }

    async def as_recorded(self, event_id: uuid.UUID) -> RecordedEvent | None:
        stored = self.s.events.get(event_id)
        return stored.event if stored is not None else None

    async def task_creations_of(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent]:
        causes = {str(s) for s in source_event_ids}
        return [
            upcast(stored.event)
            for stored in self.s.events.values()
            if stored.event.type == EventType.FOLLOWUP_TASK_CREATED.value
            and stored.event.causation_id in causes
        ]

    async def lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        return {s: self.s.stream_versions.get(s, 0) for s in stream_ids}

    async def append_numbered(
        self, events: Sequence[RecordedEvent], *, topic: str
    ) -> list[tuple[RecordedEvent, StoredPosition]]:
        versions = await self.lock_streams([e.stream_id for e in events])
        numbered: list[RecordedEvent] = []
        for event in events:
            version = versions[event.stream_id] = versions[event.stream_id] + 1
            numbered.append(
                event
                if event.stream_version == version
                else event.model_copy(update={"stream_version": version})
            )
        return list(zip(numbered, await self.append(numbered, topic=topic), strict=True))

    async def append(self, events: Sequence[RecordedEvent], *, topic: str) -> list[StoredPosition]:
        stored: list[StoredPosition] = []
        for event in events:
            version = self.s.stream_versions.get(event.stream_id, 0)
            if event.event_id in self.s.events or event.stream_version != version + 1:
                raise ConcurrencyError(f"{event.event_id} at {event.stream_id}/{version + 1}")
            position = StoredPosition(
                event.event_id, event.stream_id, event.stream_version, len(self.s.events) + 1
            )
            self.s.events[event.event_id] = StoredEvent(position, event, None)
            self.s.stream_versions[event.stream_id] = event.stream_version
            self.s.outbox.append((event.event_id, topic))
            stored.append(position)
        self.appended += len(stored)
        return stored


class MemoryFollowupUnitOfWork:
    def __init__(self, units: MemoryUnitsOfWork) -> None:
        self._units = units
        self.clients = _Clients(units.current)
        self.tasks = _Tasks(units.current)
        self.timers = _Timers(units.current)
        self.holdings = _Holdings(units.current)
        self.activity = _Activity(units.current)
        self.privacy = _Privacy(units.current)
        self.events = _Events(units.current)
        self.journal = _Journal(units.current)

    async def lock_client(self, client_id: str) -> None:
        """Units run one at a time: every client is this unit's already."""

    async def try_lock_client(self, client_id: str) -> bool:
        return True

    async def lock_products(self, product_ids: Collection[str]) -> None:
        """Units run one at a time: every product is this unit's already."""

    async def try_lock_products(self, product_ids: Collection[str]) -> bool:
        return True

    def owns_client(self, client_id: str) -> bool:
        return True

    async def hold_clients_of(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> None:
        """Every client is this unit's already, and nothing needs reading ahead."""

    async def hold_clients(self, client_ids: Sequence[str]) -> None:
        """Every client is this unit's already, and nothing needs reading ahead."""

    async def mark_applied(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        applied = self._units.state.applied
        if event.event_id in applied:
            return False
        applied[event.event_id] = (
            (position.source, position.global_position) if position else (event.source, None)
        )
        return True

    async def mark_applied_all(
        self,
        events: Sequence[tuple[RecordedEvent, SourcePosition | None]],
        *,
        locking: Sequence[bool] = (),  # every client is this unit's already
    ) -> set[uuid.UUID]:
        return {e.event_id for e, position in events if await self.mark_applied(e, position)}

    async def look_up_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent]:
        await self.tasks.load_caused_by(source_event_ids)
        return await self.events.task_creations_of(source_event_ids)

    async def mark_appended_applied(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> None:
        await self.mark_applied_all(events)

    async def append_applied(
        self, events: Sequence[RecordedEvent], *, topic: str, source: str
    ) -> None:
        stored = await self.events.append_numbered(events, topic=topic)
        await self.mark_appended_applied(
            [(e, SourcePosition(source, p.global_position)) for e, p in stored]
        )

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        saved = copy.deepcopy(self._units.state)
        try:
            yield
        except BaseException:
            self._units.state = saved
            raise


class MemoryUnitsOfWork:
    """The store of the in-memory units; ``state`` is what they committed."""

    def __init__(self, *, on_commit: Callable[[], None] | None = None) -> None:
        self.state = MemoryState()
        self._on_commit = on_commit
        self._one_at_a_time = asyncio.Lock()

    def current(self) -> MemoryState:
        return self.state

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[MemoryFollowupUnitOfWork]:
        async with self._one_at_a_time:
            saved = copy.deepcopy(self.state)
            unit = MemoryFollowupUnitOfWork(self)
            try:
                yield unit
            except BaseException:
                self.state = saved
                raise
        if unit.events.appended and self._on_commit is not None:
            self._on_commit()

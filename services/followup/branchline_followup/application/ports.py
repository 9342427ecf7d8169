"""The ports of followup's use cases: a unit of work and the read-model repositories behind it
(ADR-0013, docs/followup.md "Unit of work").

A use case opens one :class:`FollowupUnitOfWork` per transaction (``async with
units.begin() as uow``) and never sees a connection: the unit holds the swap lock shared from
its start (a rebuild's swap waits for it), takes a client's lock when asked, records applied
event ids, appends followup's own events (with their outbox rows) and wakes the outbox relay
after a commit that appended any. Leaving the block commits; an exception rolls everything
back. One implementation runs on PostgreSQL (``adapters/unit_of_work.py``), one in memory
(``adapters/memory_unit_of_work.py``) for fast tests; both pass ``tests/contract``.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from branchline_followup.domain import DurableTimer, FollowupTask
from branchline_followup.domain.records import (
    ClientFacts,
    DueTimer,
    PrivacyState,
    SealedValue,
    StaffMember,
    StaffPrivacyState,
)
from branchline_followup.domain.source_order import SourcePlace
from branchline_followup.domain.suitability import Holding, Rating
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded
from branchline_shared.eventstore.ports import StoredEvent, StoredPosition
from branchline_shared.kafka.wire import SourcePosition


class ClientRepository(Protocol):
    """The clients followup knows (their D-09 facts) and their durable stage timers."""

    async def get(self, client_id: str) -> ClientFacts | None: ...

    async def save(self, facts: ClientFacts) -> None: ...

    async def claim_due_stage_changes(self, now: datetime, limit: int) -> list[str]:
        """Clients whose stage changes by time at or before ``now``, held by this unit until
        it ends; clients another unit holds are skipped (ADR-0008)."""
        ...

    async def count_due_stage_changes(self, now: datetime) -> int: ...

    async def dead_letter_stage_change(self, client_id: str, reason: str) -> None:
        """The client's stage timer cleared, with why (poison stays local)."""
        ...


class TaskRepository(Protocol):
    async def get(self, task_id: uuid.UUID) -> FollowupTask | None: ...

    async def open_of(self, client_id: str) -> list[FollowupTask]:
        """The client's open tasks, oldest first."""
        ...

    async def save(self, tasks: Sequence[FollowupTask]) -> None: ...

    async def load(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Read these tasks ahead, in one go (#12): a later :meth:`get` of one of them asks
        nothing more. Only for tasks of clients the unit holds (nobody else writes them)."""
        ...

    async def load_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> None:
        """Read ahead, in one go, every stored task that these events made due (#12: one key
        per deciding event, not every kind's candidate id): a later :meth:`get_caused` of a
        task one of them caused asks nothing more. Only for events of clients the unit holds
        (their tasks are written under the client's lock)."""
        ...

    async def get_caused(self, task_id: uuid.UUID, caused_by: uuid.UUID) -> FollowupTask | None:
        """:meth:`get` of a task the event ``caused_by`` made due (its source event)."""
        ...

    async def set_outcome(self, task_id: uuid.UUID, outcome: str) -> None: ...

    async def set_overdue(self, task_id: uuid.UUID, at: datetime) -> None:
        """First overdue instant only (a later one does not move it)."""
        ...

    async def set_escalated(self, task_id: uuid.UUID, to: str) -> None:
        """First escalation only."""
        ...


class TimerRepository(Protocol):
    """Durable timers of tasks (ADR-0008)."""

    async def sync(self, task: FollowupTask, wanted: Sequence[DurableTimer]) -> None:
        """Make the task's unfired timers exactly ``wanted``; a timer whose instant moved is
        armed again; a fired timer keeps its record."""
        ...

    async def sync_all(
        self, changes: Sequence[tuple[FollowupTask, Sequence[DurableTimer]]]
    ) -> None:
        """:meth:`sync` for each task, in one statement (#12)."""
        ...

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
        """The timer fired at its instant and recorded ``event_id`` (created if missing)."""
        ...

    async def mark_fired(
        self, task_id: uuid.UUID, kind: str, at: datetime, event_id: uuid.UUID | None
    ) -> None: ...

    async def claim_due(self, now: datetime, limit: int) -> list[DueTimer]:
        """Due unfired timers, held by this unit until it ends; others' are skipped."""
        ...

    async def count_due(self, now: datetime) -> int: ...

    async def consume(self, timer_id: uuid.UUID, at: datetime) -> None:
        """A timer that fired for nothing (its task closed or moved meanwhile)."""
        ...

    async def dead_letter(self, timer_id: uuid.UUID, at: datetime, reason: str) -> None:
        """A timer that cannot fire: never claimed again, with why."""
        ...

    async def dead(self) -> list[tuple[uuid.UUID, str]]:
        """Dead-lettered timers and their reasons, by id."""
        ...


class HoldingRepository(Protocol):
    """The products each client holds, at their current rating (D-15)."""

    async def hold(
        self, client_id: str, product_id: str, product_risk: str, since: datetime
    ) -> None:
        """Hold the product at ``product_risk``; held since the earliest sale."""
        ...

    async def of_client(self, client_id: str) -> list[Holding]: ...

    async def rerate(self, product_id: str, product_risk: str) -> list[tuple[str, datetime]]:
        """Every holding of the product at its new rating; (holder, held since) of each."""
        ...

    async def record_rating(self, product_id: str, rating: Rating) -> None:
        """A rating of the shelf (approval or re-rating) joins the product's ratings."""
        ...

    async def ratings_of(self, product_id: str) -> list[Rating]: ...


class ActivityRepository(Protocol):
    """What events add to the pages (console timeline, refusals, quality and service-loop
    facts): written by the projection, read by queries, never read back to decide. Each
    event comes decoded (its payload parsed once, where the consumer received it, #12)."""

    async def record_console(self, event: Decoded, client_id: str) -> None: ...

    async def record_refusal(self, event: Decoded) -> None: ...

    async def record_visit(self, event: Decoded, rm_id: str | None, **columns: Any) -> None: ...

    async def record_survey(
        self,
        event: Decoded,
        rm_id: str | None,
        visit_id: str | None,
        scores: dict[str, float],
    ) -> None: ...

    async def record_complaint_received(
        self, event: Decoded, rm_id: str | None, severity: str, topic: str | None
    ) -> None: ...

    async def record_complaint_step(self, event: Decoded, status: str, **columns: Any) -> None: ...

    async def record_service_loop_facts(self, event: Decoded, rm_id: str | None) -> None: ...

    async def record_staff(self, staff_id: str, branch_id: str | None) -> None:
        """A member of staff and their branch (D-14, D-16)."""
        ...

    async def record_training(
        self, event: Decoded, staff_id: str, hours: Decimal, completed_at: datetime
    ) -> None:
        """Training hours of a member of staff (D-14), once per event."""
        ...


class PrivacyRepository(Protocol):
    """The personal-data read models (D-04): sealed values only."""

    async def apply(self, event: RecordedEvent) -> None:
        """The personal-data read models after ``event``."""
        ...

    async def state(self, client_id: str) -> PrivacyState | None: ...

    async def values(self, client_id: str) -> list[SealedValue]: ...

    async def pending_erasures(self) -> list[PrivacyState]:
        """Clients who asked for erasure and are not shredded yet, oldest request first."""
        ...

    async def apply_staff(self, event: RecordedEvent) -> None:
        """A member of staff's erasure read model after one of their events (their erasure
        request, its shredding, the clients their gift records name)."""
        ...

    async def staff_state(self, staff_id: str) -> StaffPrivacyState | None: ...

    async def pending_staff_erasures(self) -> list[StaffPrivacyState]:
        """Members of staff who asked for erasure and are not shredded yet, oldest first."""
        ...

    async def staff_member(self, staff_id: str) -> StaffMember | None:
        """The member of staff, if followup has applied an event of theirs."""
        ...


@dataclass(frozen=True)
class JournaledEvent:
    """An applied event of a client as the journal keeps it (envelope as applied: sealed)."""

    event: RecordedEvent
    place: SourcePlace


class ClientJournal(Protocol):
    """Every applied event of each client, with its place in its store (#13, ADR-0014): what
    re-projecting a client in source order replays."""

    async def keep(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        """Keep the client's event (its envelope as applied, its store, position and recorded
        millisecond); True when an event of the same client and store kept before comes later
        in source order (this one arrives late: the client must be projected again). One
        indexed check: the in-order path stays O(1)."""
        ...

    async def of_client(self, client_id: str) -> list[JournaledEvent]:
        """Every kept event of the client, in no particular order."""
        ...

    async def clear_read_models(self, client_id: str) -> None:
        """Remove what the client's own events wrote in every read model (the client, its
        tasks and their timers, timeline, consents, assessment, quality and service-loop facts,
        holdings, personal-data rows), keeping the applied marks, this journal, what has no
        client (shelf ratings, staff, training, refusals) and the tasks an event without a
        client caused (a D-15 re-rating's review, a D-16 gift's escalation) with their timers:
        replaying the client's events would not make those again."""
        ...


class FollowupEvents(Protocol):
    """followup's own event store (ADR-0001): its events and their outbox rows."""

    async def find(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredEvent]: ...

    async def as_recorded(self, event_id: uuid.UUID) -> RecordedEvent | None:
        """The event as it was written, at its schema version then (not upcast, as
        :meth:`find`'s readers get it): what a caller sent, to compare a resend with (#12)."""
        ...

    async def task_creations_of(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent]:
        """The recorded ``followup.task_created`` events (D-07) whose cause is one of these
        events (the created task's source event), in one indexed look-up (#12)."""
        ...

    async def lock_streams(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Lock the streams against other writers until the unit ends; their versions."""
        ...

    async def append(self, events: Sequence[RecordedEvent], *, topic: str) -> list[StoredPosition]:
        """Store the events with their outbox rows (to ``topic``); positions in order. The
        relay is woken once the unit commits."""
        ...

    async def append_numbered(
        self, events: Sequence[RecordedEvent], *, topic: str
    ) -> list[tuple[RecordedEvent, StoredPosition]]:
        """:meth:`lock_streams` of the events' streams, then :meth:`append` of the events
        numbered after each stream's version in their order (their own ``stream_version`` is
        replaced): in one statement where the unit can (#12). The events as stored, with their
        positions, in order."""
        ...


class FollowupUnitOfWork(Protocol):
    """One transaction of followup, holding the swap lock shared from its start."""

    @property
    def clients(self) -> ClientRepository: ...

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def timers(self) -> TimerRepository: ...

    @property
    def holdings(self) -> HoldingRepository: ...

    @property
    def activity(self) -> ActivityRepository: ...

    @property
    def privacy(self) -> PrivacyRepository: ...

    @property
    def events(self) -> FollowupEvents: ...

    @property
    def journal(self) -> ClientJournal: ...

    async def lock_client(self, client_id: str) -> None:
        """Serialise every change of this client's tasks until the unit ends (waits)."""
        ...

    async def try_lock_client(self, client_id: str) -> bool:
        """:meth:`lock_client` without waiting: False when another unit holds it."""
        ...

    async def lock_products(self, product_ids: Collection[str]) -> None:
        """Serialise the applying of sales and ratings of these products until the unit ends
        (waits; D-15, #12): a sale reads a product's ratings and writes a holding, a rating
        re-rates the product's holdings; two units doing both at once must not each miss the
        other's uncommitted rows. Taken before any client lock, in one fixed order, so two
        units naming the same products in other orders never deadlock. A unit that applies
        everything itself (in memory, a rebuild) needs none."""
        ...

    async def try_lock_products(self, product_ids: Collection[str]) -> bool:
        """:meth:`lock_products` without waiting: False when another unit holds one of them.
        For a unit holding clients' locks already (a re-projection's sales, D-15, #12):
        waiting there would take a product after a client, against the order above."""
        ...

    def owns_client(self, client_id: str) -> bool:
        """Whether this unit applies events to ``client_id`` (always, but in a partitioned
        rebuild's process: the clients of its share, :mod:`.rebuild_routes`)."""
        ...

    async def hold_clients_of(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> None:
        """:meth:`lock_client` for the clients of ``events`` at once, in a fixed order, and
        read ahead what applying the events reads of them (#12: a batch's round trips per
        batch, not per event): their facts, open tasks and the journal's latest place of each
        store. Only an optimisation: what is not read ahead is read when asked."""
        ...

    async def hold_clients(self, client_ids: Sequence[str]) -> None:
        """:meth:`lock_client` for these clients at once, in a fixed order, and read ahead
        their facts, open tasks and holdings (#12: a re-rating's holders, four statements
        each before). Only an optimisation: what is not read ahead is read when asked."""
        ...

    async def mark_applied(self, event: RecordedEvent, position: SourcePosition | None) -> bool:
        """Record ``event`` as applied (with where its store put it, for reconciliation);
        False when it already was (a redelivery: apply nothing)."""
        ...

    async def mark_applied_all(
        self,
        events: Sequence[tuple[RecordedEvent, SourcePosition | None]],
        *,
        locking: Sequence[bool] = (),
    ) -> set[uuid.UUID]:
        """:meth:`mark_applied` for each, in one statement (#12); the ids it recorded now
        (an id listed twice is recorded once; the others had been applied). ``locking``, a
        flag per event: also :meth:`lock_client` the clients of the flagged events recorded
        now, after recording them and in :meth:`hold_clients_of`'s order (in the same
        statement where the unit can: a round trip less per batch)."""
        ...

    async def look_up_caused_by(self, source_event_ids: Sequence[uuid.UUID]) -> list[RecordedEvent]:
        """:meth:`TaskRepository.load_caused_by` and :meth:`FollowupEvents.task_creations_of`
        of the same events at once (in one statement where the unit can, #12); the recorded
        creations."""
        ...

    async def mark_appended_applied(
        self, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
    ) -> None:
        """Record as applied events this unit appended to followup's store (ADR-0003: with
        them, so their Kafka copies change nothing). Their ids were new to the store, so
        nothing is asked back; the unit may write the records with its last writes (#12)."""
        ...

    async def append_applied(
        self, events: Sequence[RecordedEvent], *, topic: str, source: str
    ) -> None:
        """:meth:`FollowupEvents.append_numbered` of ``events``, then
        :meth:`mark_appended_applied` of each as stored (``source``, its global position);
        the unit may do both with its last writes, in their statement (#12: a round trip less
        per creating batch). Nothing in the unit reads them back after this."""
        ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A scope whose changes roll back alone when it raises (one event, one timer)."""
        ...


class UnitsOfWork(Protocol):
    """Where units of work come from (one per transaction)."""

    def begin(self) -> AbstractAsyncContextManager[FollowupUnitOfWork]: ...


class QualityRows(Protocol):
    """The rows the D-12 measures are computed from (one branch / RM / period)."""

    @property
    def tasks(self) -> list[dict[str, Any]]: ...

    @property
    def visits(self) -> list[dict[str, Any]]: ...

    @property
    def surveys(self) -> list[dict[str, Any]]: ...

    @property
    def complaints(self) -> list[dict[str, Any]]: ...

    @property
    def clients(self) -> list[ClientFacts]: ...

    @property
    def staff(self) -> list[str]:
        """D-14: the staff of the selection."""
        ...

    @property
    def training(self) -> list[dict[str, Any]]: ...


class ImprovementRows(Protocol):
    """The rows of the D-17 improvement measures."""

    @property
    def complaints(self) -> list[dict[str, Any]]: ...

    @property
    def actions(self) -> list[dict[str, Any]]: ...

    @property
    def promise_tasks(self) -> list[dict[str, Any]]: ...

    @property
    def renegotiations(self) -> int: ...


class PageReads(Protocol):
    """What the read use cases (measures, statistics, a client's service loop) read, each in
    one consistent snapshot, outside any unit of work."""

    async def quality_records(
        self, *, branch_id: str | None, rm_id: str | None, start: datetime, end: datetime
    ) -> QualityRows: ...

    async def improvement_records(
        self, *, branch_id: str | None, rm_id: str | None, start: datetime, end: datetime
    ) -> ImprovementRows: ...

    async def statistics_records(
        self, *, branch_ids: list[str] | None, start: datetime, end: datetime
    ) -> list[dict[str, Any]]: ...

    async def client_service_loop(self, client_id: str) -> dict[str, Any]: ...


class LegalHolds(Protocol):
    """The standing legal holds (D-11) the erasure job asks about before destroying anything."""

    async def held(self, client_ids: Sequence[str]) -> set[str]:
        """Which of ``client_ids`` are under a standing legal hold."""
        ...

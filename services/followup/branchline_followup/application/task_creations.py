"""Deadlines are recorded once and never recomputed (D-07; ADR-0012.

When the rules create a task, its creation is recorded as a ``followup.task_created`` event
(followup's event store and outbox, so it reaches the audit trail) carrying the deadline, the
assignee and the jurisdiction profile in force. Whenever the same task is created again (a
rebuild of the read models, a redelivered event after a reset), the recorded creation is
replayed: the rules' recomputation with today's settings is replaced by the recorded deadline,
assignee and profile. A profile change therefore never rewrites a stored deadline.

The recorded event's id is derived from the task id, so it is recorded at most once, whichever
process (worker, API, timer runner) creates the task first; it names the task's source event
as its cause, by which the creations of a decision are looked up (one key per deciding event,
indexed: migration 011, #12). A rebuild
only replays (it records nothing): a task created before creations were recorded is the one
case still recomputed.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.domain import FollowupTask, TaskKind
from branchline_followup.domain.assembled import assembled
from branchline_followup.domain.opening import creation_data, replayed, task_from_creation
from branchline_followup.domain.tasks import REMEMBERED_IDS, task_id_for
from branchline_shared.domain.ids import name_uuid
from branchline_shared.events.bounded import check_instant
from branchline_shared.events.catalogue import (
    CATALOGUE_VERSION,
    EventType,
    FollowupTaskCreated,
)
from branchline_shared.events.envelope import Actor, RecordedEvent, utc
from branchline_shared.events.typed import decode, payload_as
from branchline_shared.kafka.wire import SourcePosition

TASK_CREATED = EventType.FOLLOWUP_TASK_CREATED.value
TASK_CREATED_NAMESPACE = uuid.UUID("0f3b8e52-6a41-5d7c-9e28-b1c4d7a9e305")
"""UUID v5 namespace of the ``followup.task_created`` event ids (fixed forever)."""
RULES_ACTOR = Actor(id="followup-rules", role="system")
SOURCE = "followup"


@functools.lru_cache(maxsize=REMEMBERED_IDS)  # a task made again asks again
def task_created_event_id(task_id: uuid.UUID) -> uuid.UUID:
    return name_uuid(TASK_CREATED_NAMESPACE, str(task_id))


def _stream(task_id: uuid.UUID) -> str:
    return f"followup-task-{task_id}"


@dataclass
class PendingCreations:
    """Creations decided within one unit of work and recorded together at its end (#12): the
    worker's batch locks their streams, appends them and marks them applied in a handful of
    statements instead of six round trips per creating event. Until then they count as
    recorded for the later events of the same unit (:func:`recorded_creations` sees them),
    so the outcome is the one of recording each at once. The unit's client locks are held
    throughout, and a task's stream is only written under its client's lock, as before."""

    events: dict[uuid.UUID, RecordedEvent] = field(default_factory=dict)
    """Event id → the creation, with a provisional stream version (set when recorded)."""
    caused: dict[uuid.UUID, dict[uuid.UUID, RecordedEvent]] = field(default_factory=dict)
    """:attr:`events` by source event id → task id."""
    looked_up: set[uuid.UUID] = field(default_factory=set)
    """Source event ids whose recorded creations were looked up ahead (:meth:`look_up_ahead`)."""
    found: dict[uuid.UUID, dict[uuid.UUID, RecordedEvent]] = field(default_factory=dict)
    """Source event id (of :attr:`looked_up`) → task id → its recorded creation."""
    decided: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)
    """:attr:`events`' ids → (source event id, task id): what :func:`_decided_by` reads back
    from each, known when it is added (#12: not parsed again when recorded)."""

    def add(self, created: Iterable[tuple[FollowupTask, RecordedEvent]]) -> None:
        """``created``: each task with its creation (:func:`creation_event`), whose cause and
        task id are the task's source event and id (#12: not parsed back from the event)."""
        for task, event in created:
            self.events[event.event_id] = event
            self.caused.setdefault(task.source_event_id, {})[task.id] = event
            self.decided[event.event_id] = (task.source_event_id, task.id)

    async def look_up_ahead(
        self, uow: FollowupUnitOfWork, source_event_ids: Iterable[uuid.UUID]
    ) -> None:
        """Look up, in one statement each, the recorded creations and the stored tasks that
        the events ``source_event_ids`` made due, by those events' ids (#12: per batch, not per
        creating event; one key per event, not every task kind's candidate id). Only for events
        of clients the unit holds: their tasks and creations are written under the client's
        lock, so what was found stays true until the unit ends but for what the unit itself
        adds (:attr:`events`, and :meth:`record` keeps what it recorded)."""
        wanted = [s for s in dict.fromkeys(source_event_ids) if s not in self.looked_up]
        if not wanted:
            return
        for creation in await uow.look_up_caused_by(wanted):
            source, task_id = _decided_by(creation)
            self.found.setdefault(source, {})[task_id] = creation
        self.looked_up.update(wanted)

    async def record(self, uow: FollowupUnitOfWork, topic: str) -> int:
        """Record what is pending in ``uow`` (before it commits); how many were recorded."""
        if not self.events:
            return 0
        pending = list(self.events.values())
        decided = self.decided
        self.events, self.caused, self.decided = {}, {}, {}
        # each numbered after its stream's version, locked and written at once, and recorded
        # applied, with the unit's last writes where it can (#12)
        await uow.append_applied(pending, topic=topic, source=SOURCE)
        for event in pending:  # what was looked up ahead stays what the store holds (its
            # stream version as provisional as before it was stored: no lookup reads it)
            known = decided.get(event.event_id)
            source, task_id = known if known is not None else _decided_by(event)
            if source in self.looked_up:
                self.found.setdefault(source, {})[task_id] = event
        return len(pending)


async def recorded_creations(
    uow: FollowupUnitOfWork,
    source_event_ids: Iterable[uuid.UUID],
    task_ids: Iterable[uuid.UUID] = (),
    pending: PendingCreations | None = None,
) -> dict[uuid.UUID, RecordedEvent]:
    """Task id → recorded ``followup.task_created``, for every task of any kind that the
    events ``source_event_ids`` made due, and for ``task_ids``: tasks they made due whose id
    is not derived from the event and the kind alone (a D-15 review's is from its client
    too). Looked up by the source events (a creation's cause, #12), not by every candidate
    id; ``pending``: creations of this unit recorded at its end, which count as recorded."""
    sources = set(source_event_ids)
    if not sources:
        return {}
    caused: list[dict[uuid.UUID, RecordedEvent]] = []
    ask = sources
    if pending is not None:
        ask = sources - pending.looked_up
        caused += [pending.found[s] for s in sources - ask if s in pending.found]
    if ask:
        from_store: dict[uuid.UUID, dict[uuid.UUID, RecordedEvent]] = {}
        for creation in await uow.events.task_creations_of(list(ask)):
            source, task_id = _decided_by(creation)
            from_store.setdefault(source, {})[task_id] = creation
        caused += from_store.values()
    if pending is not None:  # after the store's: a pending creation is the newer
        caused += [pending.caused[s] for s in sources & pending.caused.keys()]
    if not caused:  # none of these decisions recorded (#12: the steady state's every one)
        return {}
    named = set(task_ids)
    found: dict[uuid.UUID, RecordedEvent] = {}
    for creations in caused:
        for task_id, creation in creations.items():
            if task_id in named or _made_by_kind(task_id, creation):
                found[task_id] = creation
    return found


def _decided_by(creation: RecordedEvent) -> tuple[uuid.UUID, uuid.UUID]:
    """(source event id, task id) of a ``followup.task_created`` (its cause: the source)."""
    if creation.causation_id is None:  # creation_event always names it
        raise ValueError(f"followup.task_created {creation.event_id} names no cause")
    return uuid.UUID(creation.causation_id), uuid.UUID(str(creation.data["task_id"]))


def _made_by_kind(task_id: uuid.UUID, creation: RecordedEvent) -> bool:
    """Whether ``task_id`` is its kind's task of the creation's source event
    (:func:`task_id_for`): what the lookup by every kind's candidate id found, as before."""
    try:
        kind = TaskKind(creation.data["kind"])
    except (KeyError, ValueError):
        return False
    source, _ = _decided_by(creation)
    return task_id_for(source, kind) == task_id


def _decision(task: FollowupTask) -> tuple[uuid.UUID, str, datetime]:
    """Tasks created by one decision share their source event, their client and their
    opening instant (one re-rating decides for each holder apart, D-15)."""
    return task.source_event_id, task.client_id, task.opened_at


def _recorded_decision(
    creation: RecordedEvent, created: FollowupTaskCreated
) -> tuple[uuid.UUID, str, datetime]:
    """:func:`_decision` of the task a recorded creation states (:func:`task_from_record`),
    read from the record; a record that states no task raises as that does."""
    if creation.client_id is None:
        raise ValueError(f"followup.task_created {creation.event_id} names no client")
    if created.source_event_id is None:
        raise ValueError(f"followup.task_created of task {created.task_id} names no source")
    return created.source_event_id, creation.client_id, creation.occurred_at


def created_payload(creation: RecordedEvent) -> FollowupTaskCreated:
    """The payload of a recorded creation (upcast, parsed; raises UnreadablePayload). A
    recorded creation is read from followup's own event store or was made by this process, so
    its payload is read without the checks made at intake (#12)."""
    return payload_as(decode(creation, from_store=True), FollowupTaskCreated)


def task_from_record(creation: RecordedEvent, created: FollowupTaskCreated) -> FollowupTask:
    """The task a recorded creation (its envelope and payload) states (when today's rules
    would not create it)."""
    if creation.client_id is None:  # every task is a client's: recorded with its client
        raise ValueError(f"followup.task_created {creation.event_id} names no client")
    return task_from_creation(
        created,
        client_id=creation.client_id,
        branch_id=creation.branch_id,
        opened_at=creation.occurred_at,
    )


_CREATION = RecordedEvent(
    event_id=uuid.UUID(int=0),
    type=TASK_CREATED,
    schema_version=CATALOGUE_VERSION[TASK_CREATED],
    occurred_at=datetime(2000, 1, 1, tzinfo=UTC),
    recorded_at=datetime(2000, 1, 1, tzinfo=UTC),
    source=SOURCE,
    actor=RULES_ACTOR,
    client_id="-",
    branch_id=None,
    stream_id="-",
    stream_version=1,
    causation_id="-",
    data={},
)
"""A validated creation whose fields :func:`creation_event` replaces (the same fields set)."""
_CREATION_FIELDS_SET = frozenset(_CREATION.model_fields_set) | {
    "event_id",
    "occurred_at",
    "recorded_at",
    "client_id",
    "branch_id",
    "stream_id",
    "stream_version",
    "causation_id",
    "data",
}
if _CREATION.__pydantic_extra__ is not None or _CREATION.__pydantic_private__ is not None:
    # :func:`assembled` sets neither; a pydantic that filled them would make the copies
    # differ from a validated creation. Checked at import, and not by ``assert``, so that a
    # process run with ``-O`` cannot start on that difference.
    raise RuntimeError("a validated creation carries extra or private state the copies lack")


def creation_event(task: FollowupTask, *, stream_version: int, now: datetime) -> RecordedEvent:
    """The ``followup.task_created`` of ``task``: what :func:`validated_creation_event`
    makes, copied from a validated creation with this task's values (#12: validating the
    envelope again was about 6 µs per created task). Only values its validation keeps as they
    are, or puts in UTC as it does, are copied in: its instants checked as ``Instant`` checks
    them, texts that are ``str``, the cause a UUID's text (always a clean token). Anything
    else is left to the validated envelope, which raises its own error."""
    data = creation_data(task)
    client_id, branch_id, source = task.client_id, task.branch_id, task.source_event_id
    try:
        if (
            type(client_id) is not str
            or not (branch_id is None or type(branch_id) is str)
            or type(stream_version) is not int
            or not isinstance(source, uuid.UUID)
        ):
            raise ValueError("left to the envelope's validation")
        occurred_at = utc(check_instant(task.opened_at))
        recorded_at = utc(check_instant(now))
    except Exception:
        return validated_creation_event(task, stream_version=stream_version, now=now)
    # ``_CREATION.model_copy(update=...)`` made directly (#12: pydantic's general copy, a
    # ``copy`` per attribute and the update applied field by field): the template's fields,
    # these values, the fields set the template's and these
    task_id = task.id
    return assembled(
        RecordedEvent,
        {
            **_CREATION.__dict__,
            "event_id": task_created_event_id(task_id),
            "occurred_at": occurred_at,
            "recorded_at": recorded_at,
            "client_id": client_id,
            "branch_id": branch_id,
            "stream_id": _stream(task_id),
            "stream_version": stream_version,
            "causation_id": str(source),
            "data": data,
        },
        _CREATION_FIELDS_SET,
    )


def validated_creation_event(
    task: FollowupTask, *, stream_version: int, now: datetime
) -> RecordedEvent:
    """The creation of ``task`` as the envelope's validation makes it."""
    data = creation_data(task)
    return RecordedEvent(
        event_id=task_created_event_id(task.id),
        type=TASK_CREATED,
        schema_version=CATALOGUE_VERSION[TASK_CREATED],
        occurred_at=task.opened_at,
        recorded_at=now,
        source=SOURCE,
        actor=RULES_ACTOR,
        client_id=task.client_id,
        branch_id=task.branch_id,
        stream_id=_stream(task.id),
        stream_version=stream_version,
        causation_id=str(task.source_event_id),
        data=data,
    )


async def settle_created_tasks(
    uow: FollowupUnitOfWork,
    created: Mapping[uuid.UUID, FollowupTask],
    *,
    topic: str | None,
    pending: PendingCreations | None = None,
) -> tuple[dict[uuid.UUID, FollowupTask], set[uuid.UUID]]:
    """The newly created tasks as they must be stored, and the ids to drop.

    Where the decision that creates them (source event, instant) was recorded, the recorded
    creations are replayed exactly: recorded tasks keep their deadline, assignee and profile,
    a task today's rules add is dropped, a recorded task they no longer make is restored. An
    unrecorded decision is recorded now (when ``topic`` is given: live processes) and its
    events marked applied (their Kafka copies then change nothing); with ``pending``, they are
    recorded when the unit ends (:class:`PendingCreations`)."""
    if not created:
        return {}, set()
    recorded = await recorded_creations(
        uow, {t.source_event_id for t in created.values()}, created, pending
    )
    if not recorded:
        # no decision of these recorded (#12: the steady state's every one): each task is
        # kept as today's rules made it and recorded now, none dropped, none to restore
        # (what the general path below makes of it, without its decisions compared)
        settled, fresh = dict(created), list(created.values())
        dropped: set[uuid.UUID] = set()
    else:
        settled, dropped, fresh = await _replayed(uow, created, recorded)
    if topic is None or not fresh:
        return settled, dropped
    if pending is not None:
        now = datetime.now(UTC)
        pending.add((t, creation_event(t, stream_version=1, now=now)) for t in fresh)
        return settled, dropped
    now = datetime.now(UTC)
    stored = await uow.events.append_numbered(
        [creation_event(t, stream_version=1, now=now) for t in fresh], topic=topic
    )
    await uow.mark_appended_applied(
        [(event, SourcePosition(SOURCE, position.global_position)) for event, position in stored]
    )
    return settled, dropped


async def _replayed(
    uow: FollowupUnitOfWork,
    created: Mapping[uuid.UUID, FollowupTask],
    recorded: dict[uuid.UUID, RecordedEvent],
) -> tuple[dict[uuid.UUID, FollowupTask], set[uuid.UUID], list[FollowupTask]]:
    """:func:`settle_created_tasks` where some of the decisions were recorded: the settled
    tasks, the ids to drop, and the settled tasks to record (of no recorded decision)."""
    # each recorded creation decoded once, here where the projection receives it, and made
    # into its task once (#12: it was made twice, by the two loops below, a model copy and a
    # payload read each time)
    payloads = {task_id: created_payload(e) for task_id, e in recorded.items()}
    decided = {_recorded_decision(recorded[task_id], p) for task_id, p in payloads.items()}
    # a recorded task is made from its record only where the record is what is kept (a task
    # today's rules no longer make); one they make again is replayed (#12: a rebuild made
    # each of these from its record too, a validated model, to compare decisions)
    stated = {
        task_id: task_from_record(recorded[task_id], p)
        for task_id, p in payloads.items()
        if task_id not in created
    }
    settled: dict[uuid.UUID, FollowupTask] = {}
    dropped: set[uuid.UUID] = set()
    for task_id, task in created.items():
        if task_id in recorded:
            settled[task_id] = replayed(task, payloads[task_id])
        elif _decision(task) in decided:
            dropped.add(task_id)
        else:
            settled[task_id] = task
    decisions = {_decision(t) for t in created.values()}
    for task_id, task in stated.items():
        restore = task_id not in created and _decision(task) in decisions
        if restore and await uow.tasks.get_caused(task_id, task.source_event_id) is None:
            settled[task_id] = task
    fresh = [t for task_id, t in settled.items() if task_id not in recorded]
    return settled, dropped, fresh

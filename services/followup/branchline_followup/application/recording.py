"""Recording the followup service's own events (``followup.*``): appended to its event store
with the outbox row (the shared PostgreSQL event store, ADR-0001) and applied to the read
models, all in the caller's transaction. Their Kafka copy, relayed later, finds its id applied.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from branchline_followup.application.clock import ServiceClock
from branchline_followup.application.ports import FollowupUnitOfWork, UnitsOfWork
from branchline_followup.application.projector import Projection, project
from branchline_followup.domain import FollowupTask
from branchline_shared.crypto.keystore import ClientKeyStore
from branchline_shared.crypto.sealing import seal_paths
from branchline_shared.events.catalogue import CATALOGUE_VERSION, PERSONAL_FIELDS, parse_payload
from branchline_shared.events.envelope import Actor, RecordedEvent, Submitter
from branchline_shared.events.typed import decode
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgPool

SOURCE = "followup"
TIMER_ACTOR = Actor(id="followup-timer", role="system")


@dataclass(frozen=True)
class FollowupContext:
    """The dependencies of followup's use cases."""

    pool: PgPool
    """Reads outside a unit of work (the page queries)."""
    units: UnitsOfWork
    """Every write: one unit of work per transaction (ADR-0013); it wakes the outbox relay
    of this process after a commit that appended events."""
    projection: Projection
    topic: str
    clock: ServiceClock
    keys: ClientKeyStore | None = None
    """Seals the personal values of followup's own events (an RM's note) with the client's
    data key before they are stored or published (ADR-0007)."""


def task_stream_id(task_id: uuid.UUID) -> str:
    """Every event of one task forms one stream of followup's event store."""
    return f"followup-task-{task_id}"


def normalised(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` checked against the catalogue's payload model and in its JSON form (what the
    Kafka copy carries, so applying either gives the same read models)."""
    return parse_payload(event_type, data).model_dump(mode="json", exclude_none=True)


async def _sealed(
    ctx: FollowupContext, event_type: str, client_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    paths = tuple(
        p for p in PERSONAL_FIELDS.get(event_type, ()) if data.get(p.split(".", 1)[0]) is not None
    )
    if not paths:
        return data
    if ctx.keys is None:
        raise RuntimeError(f"{event_type} carries personal data but no key store is configured")
    key = await ctx.keys.key_for(client_id)
    return seal_paths(data, paths, key, client_id=client_id)


async def record_and_apply(
    uow: FollowupUnitOfWork,
    ctx: FollowupContext,
    *,
    event_id: uuid.UUID,
    event_type: str,
    task: FollowupTask,
    occurred_at: datetime,
    actor: Actor,
    data: dict[str, Any],
    submitted_by: Submitter | None = None,
) -> RecordedEvent:
    """Append the event (once: an id already stored is not appended again) and apply it.
    ``submitted_by``: the authenticated caller of an RM's or supervisor's action (None for the
    timers). An event dated after the real time was caused by the dev-mode test clock and is
    marked ``synthetic``."""
    existing = await uow.events.find([event_id])
    if event_id in existing:
        event = existing[event_id].event
        global_position = existing[event_id].position.global_position
    else:
        stream = task_stream_id(task.id)
        versions = await uow.events.lock_streams([stream])
        recorded_at = ctx.clock.system_now()
        event = RecordedEvent(
            event_id=event_id,
            type=event_type,
            schema_version=CATALOGUE_VERSION.get(event_type, 1),
            occurred_at=occurred_at,
            recorded_at=recorded_at,
            source=SOURCE,
            actor=actor,
            client_id=task.client_id,
            branch_id=task.branch_id,
            stream_id=stream,
            stream_version=versions.get(stream, 0) + 1,
            causation_id=str(task.source_event_id),
            data=await _sealed(ctx, event_type, task.client_id, normalised(event_type, data)),
            submitted_by=submitted_by,
            synthetic=occurred_at > recorded_at,
        )
        (stored,) = await uow.events.append([event], topic=ctx.topic)
        global_position = stored.global_position
    # decoded here, where this process received it (what it just recorded, or found stored)
    await project(uow, decode(event), ctx.projection, SourcePosition(SOURCE, global_position))
    return event

"""Recording the followup service's own events (``followup.*``): appended to its event store
with the outbox row (the shared PostgreSQL event store, decision 1) and applied to the read
models, all in the caller's transaction. Their Kafka copy, relayed later, finds its id applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from branchline_followup.application.clock import ServiceClock
from branchline_followup.application.projector import Projection, project
from branchline_followup.domain import FollowupTask
from branchline_shared.events.catalogue import CATALOGUE_VERSION, parse_payload
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.eventstore.postgres import PostgresUnitOfWork
from branchline_shared.postgres.pool import PgConnection, PgPool

SOURCE = "followup"
TIMER_ACTOR = Actor(id="followup-timer", role="system")


@dataclass(frozen=True)
class FollowupContext:
    """The dependencies of followup's use cases."""

    pool: PgPool
    projection: Projection
    topic: str
    clock: ServiceClock
    on_commit: Callable[[], None] | None = None
    """Wakes the outbox relay of this process after a commit."""

    def committed(self) -> None:
        if self.on_commit is not None:
            self.on_commit()


def task_stream_id(task_id: uuid.UUID) -> str:
    """Every event of one task forms one stream of followup's event store."""
    return f"followup-task-{task_id}"


def normalised(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` checked against the catalogue's payload model and in its JSON form (what the
    Kafka copy carries, so applying either gives the same read models)."""
    return parse_payload(event_type, data).model_dump(mode="json", exclude_none=True)


async def record_and_apply(
    conn: PgConnection,
    ctx: FollowupContext,
    *,
    event_id: uuid.UUID,
    event_type: str,
    task: FollowupTask,
    occurred_at: datetime,
    actor: Actor,
    data: dict[str, Any],
) -> RecordedEvent:
    """Append the event (once: an id already stored is not appended again) and apply it."""
    uow = PostgresUnitOfWork(conn)
    existing = await uow.find_existing([event_id])
    if event_id in existing:
        event = existing[event_id].event
    else:
        stream = task_stream_id(task.id)
        versions = await uow.lock_streams([stream])
        event = RecordedEvent(
            event_id=event_id,
            type=event_type,
            schema_version=CATALOGUE_VERSION.get(event_type, 1),
            occurred_at=occurred_at,
            recorded_at=ctx.clock.system_now(),
            source=SOURCE,
            actor=actor,
            client_id=task.client_id,
            branch_id=task.branch_id,
            stream_id=stream,
            stream_version=versions.get(stream, 0) + 1,
            causation_id=str(task.source_event_id),
            data=normalised(event_type, data),
        )
        uow.stage(event, topic=ctx.topic, submission_hash=None)
        await uow.commit()
    await project(conn, event, ctx.projection)
    return event

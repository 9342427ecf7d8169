"""Rebuild the read models from the event log, blue/green.

1. A fresh schema ``fu_rebuild_<n>`` gets empty copies of the live tables.
2. Every event of the topics, from the beginning up to the end offsets captured at the start,
   is applied to it by the same :func:`project` the worker runs, in batches (one transaction
   per batch, a savepoint per event: an event the worker dead-lettered is skipped here too).
   Meanwhile the live worker, timer runner and API go on with the live schema.
3. The swap, one transaction: take the swap lock exclusively (live writers finish their
   current transaction and wait), catch up to the topics' *current* end offsets and with the
   followup events not yet on Kafka (the outbox), make the clients' stage changes by time that
   are due by the service's clock (what the live timer runner did or is about to do), then
   rename the live schema away and the new one into its place. Writers resume on the new
   tables; whatever they apply again is already applied by id. The API kept serving the old
   tables until that commit.
4. The retired schema is dropped (or kept, for comparison).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from branchline_followup.adapters import pg_schemas
from branchline_followup.adapters.topic_replay import ReplayedMessage
from branchline_followup.adapters.unit_of_work import PostgresFollowupUnitOfWork
from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.projector import (
    Projection,
    apply_client_stage_changes,
    project,
)
from branchline_followup.application.recording import SOURCE as STORE_SOURCE
from branchline_followup.domain import FollowupPolicy
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.consuming import is_transient
from branchline_shared.kafka.wire import (
    PoisonEvent,
    SourcePosition,
    decode_current_event,
    source_position,
)
from branchline_shared.postgres.pool import PgConnection, PgPool, open_pool

Progress = Callable[[int], None]
"""Called with how many more events were handled."""

RECENT_STORE_EVENTS = timedelta(minutes=10)


class EventSource(Protocol):
    async def start(self) -> int: ...

    def messages(self) -> AsyncIterator[ReplayedMessage]: ...

    async def extend_to_current_end(self) -> int: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class RebuildResult:
    schema: str
    total: int
    applied: int
    skipped: int
    caught_up: int
    retired: str | None


@dataclass
class _Counts:
    applied: int = 0
    skipped: int = 0


async def rebuild_read_models(
    *,
    admin_pool: PgPool,
    database_url: str,
    source: EventSource,
    policy: FollowupPolicy,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
    batch_size: int = 500,
    keep_retired: bool = False,
    clock: Callable[[], Awaitable[datetime]] | None = None,
) -> RebuildResult:
    """Rebuild into a new schema and swap it in; see the module's docstring."""
    async with admin_pool.acquire() as conn:
        number = await conn.fetchval(
            "INSERT INTO fu_rebuilds (schema_name) VALUES ('') RETURNING id"
        )
        target = f"{pg_schemas.REBUILD_PREFIX}{number}"
        retired = f"{pg_schemas.RETIRED_PREFIX}{number}"
        started_at = await conn.fetchval(
            "UPDATE fu_rebuilds SET schema_name = $2 WHERE id = $1 RETURNING started_at",
            number,
            target,
        )
        await pg_schemas.clone_schema(conn, target)
    projection = Projection(policy)
    counts = _Counts()
    pool = await open_pool(
        pg_schemas.with_search_path(database_url, target), min_size=1, max_size=1
    )
    try:
        total = await source.start()
        if on_total is not None:
            on_total(total)
        async with pool.acquire() as conn:
            # One unit of work over the rebuild's connection, the transactions opened here.
            uow = PostgresFollowupUnitOfWork(conn, pg_schemas.REBUILD_CLIENT_LOCK_CLASS)
            batch: list[ReplayedMessage] = []
            async for message in source.messages():
                batch.append(message)
                if len(batch) >= batch_size:
                    async with conn.transaction():
                        await _apply_all(uow, batch, projection, counts, on_progress)
                    batch = []
            if batch:
                async with conn.transaction():
                    await _apply_all(uow, batch, projection, counts, on_progress)

            async with conn.transaction():
                await pg_schemas.hold_swap_lock_exclusive(conn)
                caught_up = await source.extend_to_current_end()
                if on_total is not None and caught_up:
                    on_total(total + caught_up)
                tail = [m async for m in source.messages()]
                await _apply_all(uow, tail, projection, counts, on_progress)
                for event, position in await _store_events_not_on_kafka(conn, started_at):
                    await _apply_one(uow, event, projection, counts, position)
                if clock is not None:
                    await _apply_due_stage_changes(uow, await clock(), projection)
                await pg_schemas.swap_in(conn, rebuilt=target, retired=retired)
                await conn.execute(
                    "UPDATE fu_rebuilds SET finished_at = now(), events = $2, skipped = $3 "
                    "WHERE id = $1",
                    number,
                    counts.applied,
                    counts.skipped,
                )
    finally:
        await source.stop()
        await pool.close()
    if not keep_retired:
        async with admin_pool.acquire() as conn:
            await pg_schemas.drop_schema(conn, retired)
    return RebuildResult(
        schema=target,
        total=total + caught_up,
        applied=counts.applied,
        skipped=counts.skipped,
        caught_up=caught_up,
        retired=retired if keep_retired else None,
    )


async def _apply_all(
    uow: FollowupUnitOfWork,
    messages: list[ReplayedMessage],
    projection: Projection,
    counts: _Counts,
    on_progress: Progress | None,
) -> None:
    for message in messages:
        try:
            event = decode_current_event(message.value)
        except PoisonEvent:
            counts.skipped += 1  # the live worker dead-lettered it
            continue
        await _apply_one(uow, event, projection, counts, source_position(message.headers))
    if on_progress is not None and messages:
        on_progress(len(messages))


async def _apply_one(
    uow: FollowupUnitOfWork,
    event: RecordedEvent,
    projection: Projection,
    counts: _Counts,
    position: SourcePosition | None,
) -> None:
    try:
        async with uow.savepoint():  # a failing event leaves no trace
            await project(uow, event, projection, position)
        counts.applied += 1
    except Exception as exc:
        if is_transient(exc):
            raise
        counts.skipped += 1  # what the live worker dead-lettered


async def _apply_due_stage_changes(
    uow: FollowupUnitOfWork, now: datetime, projection: Projection, batch_size: int = 500
) -> None:
    """The stage changes by time due at ``now``, as the live timer runner makes them."""
    while claimed := await uow.clients.claim_due_stage_changes(now, batch_size):
        for client_id in claimed:
            await uow.lock_client(client_id)
            await apply_client_stage_changes(uow, client_id, now, projection.policy)


async def _store_events_not_on_kafka(
    conn: PgConnection, since: Any
) -> list[tuple[RecordedEvent, SourcePosition]]:
    """followup's own events that may not have reached Kafka yet: unpublished outbox rows, and
    the recent ones (a relay may have sent them after the end offsets were captured)."""
    rows = await conn.fetch(
        """
        SELECT e.global_position, e.envelope FROM es_events e
        WHERE e.recorded_at >= $1
           OR EXISTS (SELECT 1 FROM es_outbox o
                      WHERE o.event_id = e.event_id AND o.published_at IS NULL)
        ORDER BY e.tx_id, e.global_position
        """,
        since - RECENT_STORE_EVENTS,
    )
    return [
        (
            RecordedEvent.model_validate(r["envelope"]),
            SourcePosition(STORE_SOURCE, r["global_position"]),
        )
        for r in rows
    ]

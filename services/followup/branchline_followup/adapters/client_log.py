"""SQL of ``fu_client_log``: the events that changed a client's read models, in source order.

Source order is the order a rebuild from the stores applies events in (``StoreReplay``): each
store's events in their log order (global position), the stores merged by the time each
event was recorded (in milliseconds, rounded as that reader rounds it; intake first on a tie).
An event is late when the client has a logged event of the same store at a later global
position (a re-publish after later events of the client were applied).
"""

from __future__ import annotations

from branchline_followup.adapters.store_replay import merged
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection

SOURCE_RANK = {"intake": 0, "followup": 1}
"""The stores in the order ``rebuild followup --from-stores`` merges them."""
OTHER_SOURCE_RANK = len(SOURCE_RANK)


async def append(
    conn: PgConnection, client_id: str, event: RecordedEvent, position: SourcePosition | None
) -> bool:
    """Log ``event`` for ``client_id``; True when it is older than an event of the same store
    already logged for the client (by global position), which then has to be re-projected.
    The caller holds the client's lock. An event without its store position is never late."""
    source = position.source if position else event.source
    older = await conn.fetchval(
        """
        WITH new AS (
            INSERT INTO fu_client_log (event_id, client_id, recorded_ms, source_rank, source,
                                       global_position, envelope)
            VALUES ($1, $2, (extract(epoch FROM $3::timestamptz) * 1000)::bigint, $4, $5, $6,
                    $7::jsonb)
            ON CONFLICT (client_id, event_id) DO NOTHING
            RETURNING recorded_ms, source_rank, global_position
        )
        SELECT EXISTS (
            SELECT 1 FROM fu_client_log l, new
            WHERE l.client_id = $2 AND l.source_rank = new.source_rank
              AND new.global_position > 0 AND l.global_position > new.global_position
        )
        """,
        event.event_id,
        client_id,
        event.recorded_at,
        SOURCE_RANK.get(source or "", OTHER_SOURCE_RANK),
        source,
        position.global_position if position else 0,
        event.model_dump(mode="json"),
    )
    return bool(older)


async def events_of(conn: PgConnection, client_id: str) -> list[RecordedEvent]:
    """The client's logged events, in source order (the pools decode ``jsonb``)."""
    rows = await conn.fetch(
        "SELECT source_rank, recorded_ms, envelope FROM fu_client_log WHERE client_id = $1 "
        "ORDER BY source_rank, global_position, recorded_ms, event_id",
        client_id,
    )
    logs: list[list[tuple[int, RecordedEvent]]] = [[] for _ in range(OTHER_SOURCE_RANK + 1)]
    for r in rows:
        logs[r["source_rank"]].append(
            (r["recorded_ms"], RecordedEvent.model_validate(r["envelope"]))
        )
    return merged(logs)


KEPT_TABLES = ("fu_client_log", "fu_refusals")
"""Not forgotten by a re-projection: the log itself, and the refusals (one row per refusal
event, whatever the order; the refusal names the client of the refused event, not its own)."""


async def forget_read_models_of(conn: PgConnection, client_id: str) -> list[str]:
    """Delete every read-model row of ``client_id`` (every table of the schema being written
    that has a ``client_id`` column) except :data:`KEPT_TABLES`; returns the tables."""
    tables = [
        r["table_name"]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'client_id' "
            "AND NOT (table_name = ANY($1::text[])) ORDER BY table_name",
            list(KEPT_TABLES),
        )
    ]
    for table in tables:
        await conn.execute(f'DELETE FROM "{table}" WHERE client_id = $1', client_id)  # noqa: S608 - names from the catalogue, bound values
    return tables

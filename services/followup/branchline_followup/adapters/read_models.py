"""SQL of the followup read models (asyncpg). No HTTP or Kafka concerns here."""

from __future__ import annotations

from typing import Any

import asyncpg

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.postgres.pool import PgConnection


async def mark_applied(conn: PgConnection, event: RecordedEvent) -> bool:
    """Record that ``event`` is applied; False when it already was (a redelivery)."""
    inserted = await conn.fetchval(
        "INSERT INTO fu_applied_events (event_id, type) VALUES ($1, $2) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event.event_id,
        event.type,
    )
    return bool(inserted)


async def upsert_registered_client(conn: PgConnection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        INSERT INTO fu_clients (client_id, client_type, rm_id, branch_id, registered_at,
                                last_event_at)
        VALUES ($1, $2, $3, $4, $5, $5)
        ON CONFLICT (client_id) DO UPDATE
           SET client_type = EXCLUDED.client_type, rm_id = EXCLUDED.rm_id,
               branch_id = COALESCE(EXCLUDED.branch_id, fu_clients.branch_id),
               updated_at = now()
        """,
        event.client_id,
        event.data["client_type"],
        event.data["rm_id"],
        event.branch_id,
        event.occurred_at,
    )


async def touch_client(conn: PgConnection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE fu_clients SET last_event_at = GREATEST(last_event_at, $2), updated_at = now() "
        "WHERE client_id = $1",
        event.client_id,
        event.occurred_at,
    )


async def fetch_client(pool: asyncpg.Pool[Any], client_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM fu_clients WHERE client_id = $1", client_id)
    return dict(row) if row else None

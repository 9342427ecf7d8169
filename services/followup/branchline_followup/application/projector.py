"""Applies one event to the read models, effectively once.

The applied event id and the read-model change are one transaction: a redelivered event finds
its id recorded and changes nothing (decision 3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from branchline_followup.adapters import read_models
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.postgres.pool import PgConnection

Handler = Callable[[PgConnection, RecordedEvent], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    "client.registered": read_models.upsert_registered_client,
}


async def apply_event(pool: asyncpg.Pool[Any], event: RecordedEvent) -> bool:
    """Apply ``event``; returns False when it had already been applied."""
    async with pool.acquire() as conn, conn.transaction():
        if not await read_models.mark_applied(conn, event):
            return False
        handler = HANDLERS.get(event.type)
        if handler is not None:
            await handler(conn, event)
        await read_models.touch_client(conn, event)
        return True

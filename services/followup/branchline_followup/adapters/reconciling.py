"""What the followup read models applied, as reconcile compares it with the event stores."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from branchline_followup.adapters.read_models import applied_ids
from branchline_shared.postgres.pool import PgPool
from branchline_shared.reconcile.compare import AppliedEvent


async def read_models_applied(pool: PgPool) -> list[AppliedEvent]:
    """Every event id the live read models applied (``fu_applied_events``, found through the
    pool's search_path), in the order applied, with its store and global position."""
    rows = await pool.fetch(
        "SELECT event_id, applied_seq, source, global_position FROM fu_applied_events "
        "ORDER BY applied_seq"
    )
    return [
        AppliedEvent(r["event_id"], r["applied_seq"], r["source"], r["global_position"])
        for r in rows
    ]


async def read_models_have(pool: PgPool, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``event_ids`` the live read models applied."""
    async with pool.acquire() as conn:
        return await applied_ids(conn, event_ids)

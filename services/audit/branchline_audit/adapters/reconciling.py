"""What the audit ledger applied, as reconcile compares it with the event stores."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from branchline_audit.domain.records import AUDIT_SOURCE
from branchline_shared.reconcile.compare import AppliedEvent


async def ledger_applied(pool: asyncpg.Pool[Any]) -> list[AppliedEvent]:
    """Every ledger entry: its event id, ledger position (the order applied) and, where the
    consumer recorded it, the store and global position it came from."""
    rows = await pool.fetch(
        # The event's source from its column or (stored once since migration 006, #12) its
        # canonical bytes, for entries without a recorded store position.
        "SELECT l.event_id, l.position, coalesce(p.source, l.event->>'source', "
        "audit_entry_event(l.canonical, l.position)->>'source') AS source, "
        "p.global_position FROM audit_ledger l "
        "LEFT JOIN audit_source_positions p USING (event_id) ORDER BY l.position"
    )
    return [
        AppliedEvent(r["event_id"], r["position"], r["source"], r["global_position"]) for r in rows
    ]


async def ledger_has(pool: asyncpg.Pool[Any], event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``event_ids`` the ledger holds."""
    rows = await pool.fetch(
        "SELECT event_id FROM audit_ledger WHERE event_id = ANY($1::uuid[])", list(event_ids)
    )
    return {r["event_id"] for r in rows}


OWN_SOURCES = frozenset({AUDIT_SOURCE})
"""Entries the ledger writes itself (``audit.read``, ``audit.pruned``): no store has them."""

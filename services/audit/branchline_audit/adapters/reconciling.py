"""What the audit ledger applied, as reconcile compares it with the event stores."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from branchline_audit.domain.records import AUDIT_SOURCE
from branchline_shared.reconcile.compare import AppliedEvent

_LEDGER_APPLIED = (
    # The event's source from its column or (stored once since migration 006, #12) its
    # canonical bytes, for entries without a recorded store position.
    "SELECT l.event_id, l.position, coalesce(p.source, l.event->>'source', "
    "audit_entry_event(l.canonical, l.position)->>'source') AS source, "
    "p.global_position FROM audit_ledger l "
    "LEFT JOIN audit_source_positions p USING (event_id) "
)


async def ledger_applied(pool: asyncpg.Pool[Any]) -> list[AppliedEvent]:
    """Every ledger entry: its event id, ledger position (the order applied) and, where the
    consumer recorded it, the store and global position it came from."""
    return _applied(await pool.fetch(_LEDGER_APPLIED + "ORDER BY l.position"))


async def ledger_applied_page(
    pool: asyncpg.Pool[Any], after: int, limit: int
) -> list[AppliedEvent]:
    """:func:`ledger_applied`, the entries after ledger position ``after``, at most ``limit``
    (a keyset page: ``branchline reconcile`` reads the ledger a page at a time, #12)."""
    return _applied(
        await pool.fetch(
            _LEDGER_APPLIED + "WHERE l.position > $1 ORDER BY l.position LIMIT $2", after, limit
        )
    )


async def ledger_applied_among(
    pool: asyncpg.Pool[Any], event_ids: Sequence[uuid.UUID]
) -> list[AppliedEvent]:
    """Of ``event_ids``, the ledger's entries, as :func:`ledger_applied` tells them."""
    return _applied(
        await pool.fetch(_LEDGER_APPLIED + "WHERE l.event_id = ANY($1::uuid[])", list(event_ids))
    )


def _applied(rows: Sequence[Any]) -> list[AppliedEvent]:
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

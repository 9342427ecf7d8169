"""SQL: the ledger entries that record relationship ends and legal holds (D-09, D-11), read
in position order for :mod:`branchline_audit.domain.relationships`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from branchline_audit.domain.relationships import LedgerFact
from branchline_shared.postgres.pool import PgConnection, PgPool


async def ledger_facts(
    db: PgPool | PgConnection, event_types: Sequence[str], client_id: str | None = None
) -> list[LedgerFact]:
    """Entries of ``event_types`` (of ``client_id`` when given), in ledger order."""
    sql = (
        "SELECT position, event_type, client_id, occurred_at, appended_at, actor_id, "
        # The event's column, or (stored once since migration 006, #12) its canonical bytes.
        "coalesce(event, audit_entry_event(canonical, position)) -> 'data' AS data "
        "FROM audit_ledger "
        "WHERE event_type = ANY($1::text[]) AND client_id IS NOT NULL"
    )
    params: list[Any] = [list(event_types)]
    if client_id is not None:
        params.append(client_id)
        sql += " AND client_id = $2"
    rows = await db.fetch(sql + " ORDER BY position", *params)
    return [
        LedgerFact(
            position=r["position"],
            event_type=r["event_type"],
            client_id=r["client_id"],
            occurred_at=r["occurred_at"],
            appended_at=r["appended_at"],
            actor_id=r["actor_id"],
            data=_data(r["data"]),
        )
        for r in rows
    ]


def _data(raw: Any) -> dict[str, Any]:
    """The payload (decoded by the pool's json codec; a pruned entry has none)."""
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {}

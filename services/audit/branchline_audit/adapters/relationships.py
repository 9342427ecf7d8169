"""SQL: the ledger entries that record relationship ends and legal holds (D-09, D-11), read
in position order for :mod:`branchline_audit.domain.relationships`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from branchline_audit.adapters.altered import WRITTEN_TIME, unwritten_times
from branchline_audit.domain.relationships import LedgerFact
from branchline_audit.domain.verification import AlteredEntry
from branchline_shared.postgres.pool import PgConnection, PgPool


async def ledger_facts(
    db: PgPool | PgConnection, event_types: Sequence[str], client_id: str | None = None
) -> list[LedgerFact]:
    """Entries of ``event_types`` (of ``client_id`` when given), in ledger order."""
    if not event_types:
        return []
    # Each type as a byte range of one value (the same rows as equality in a deterministic
    # collation), which the type_prefix index (migration 005) serves on a generic plan: as
    # `= ANY($1)` or a join to the array's elements, a generic plan, blind to how rare the
    # types are, read the whole ledger (#12), under the ledger's lock when a hold is placed.
    types = " OR ".join(
        f"(event_type ~>=~ ${i} AND event_type ~<=~ ${i})" for i in range(1, len(event_types) + 1)
    )
    sql = (
        "SELECT position, event_type, client_id, actor_id, "  # noqa: S608 - placeholders only, bound values
        # A time no append writes (altered behind the ledger's back) is not read, but named
        # (AlteredEntry, D-11): asyncpg would refuse it or read a naive extreme (#12).
        f"CASE WHEN {WRITTEN_TIME.format('occurred_at')} THEN occurred_at END AS occurred_at, "
        f"CASE WHEN {WRITTEN_TIME.format('appended_at')} THEN appended_at END AS appended_at, "
        f"{unwritten_times(('appended_at', 'occurred_at'))} AS unwritten, "
        # The event's column, or (stored once since migration 006, #12) its canonical bytes.
        "coalesce(event, audit_entry_event(canonical, position)) -> 'data' AS data "
        f"FROM audit_ledger WHERE ({types}) AND client_id IS NOT NULL"
    )
    params: list[Any] = list(event_types)
    if client_id is not None:
        params.append(client_id)
        sql += f" AND client_id = ${len(params)}"
    rows = await db.fetch(sql + " ORDER BY position", *params)
    for r in rows:
        if r["unwritten"] is not None:
            raise AlteredEntry(r["position"], r["unwritten"])
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

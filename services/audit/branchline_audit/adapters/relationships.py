"""SQL: the ledger entries that record relationship ends and legal holds (D-09, D-11), read
in position order for :mod:`branchline_audit.domain.relationships`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from branchline_audit.adapters.altered import READ_COLUMNS, with_neighbours
from branchline_audit.domain.relationships import LedgerFact
from branchline_audit.domain.verification import ServedCheck, reader_entries
from branchline_shared.postgres.pool import PgConnection, PgPool

SignedLeafCheck = Callable[[tuple[int, bytes | None]], Awaitable[None]]
"""Holds a read's ``signed_leaf`` (:attr:`StoredEntry.signed_leaf`) against its signed
checkpoint, raising :class:`UnsignedHistory` when the ledger contradicts it (D-11,
``application/signed_leaves.py``); the composition root hands it to the ledger."""


async def ledger_facts(
    db: PgPool | PgConnection,
    event_types: Sequence[str],
    client_id: str | None = None,
    *,
    signed: SignedLeafCheck,
) -> list[LedgerFact]:
    """Entries of ``event_types`` (of ``client_id`` when given), in ledger order; the read's
    signed checkpoint held against the ledger with ``signed`` as every trail read's is (a
    hold or relationship end rewritten with every later hash recomputed is refused,
    :class:`UnsignedHistory`, D-11, #12). Required: no read of the facts goes unchecked."""
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
        # The whole row, as the trail's readers read it (READ_COLUMNS), so that each fact is
        # checked as a served entry is (ServedCheck: a time no append writes, or a time, type,
        # client or event that is not what its hash covers, refuses it by name, AlteredEntry,
        # D-11): a hold or a relationship end altered behind the ledger's back is never
        # decided on (#12). With the links of the entries beside each (with_neighbours): one
        # rewritten with its own hash recomputed is refused too.
        f"SELECT {READ_COLUMNS} FROM audit_ledger "  # noqa: S608 - placeholders only, bound values
        f"WHERE {types}"
    )
    # Selected by type only, every client's, and the client chosen after the check, by the
    # checked column: a fact whose client_id column was altered (to another client, or
    # emptied) is read and refused by name, where a condition on that column skipped it
    # (D-11, #12). An event_type column altered away from the facts' types is not read
    # (docs/audit.md: verify finds it).
    rows = await db.fetch(with_neighbours(sql), *event_types)
    check = ServedCheck()
    facts: list[LedgerFact] = []
    entries = reader_entries(rows)
    for stored in entries:
        altered = check.altered(stored)
        if altered is not None:
            raise altered
        columns, data = stored.columns, stored.entry.event.get("data")
        if columns.client_id is None or (client_id is not None and columns.client_id != client_id):
            continue
        facts.append(
            LedgerFact(
                position=stored.entry.position,
                event_type=columns.event_type,
                client_id=columns.client_id,
                occurred_at=columns.occurred_at,
                appended_at=datetime.fromisoformat(stored.entry.appended_at),
                actor_id=columns.actor_id,
                # a pruned entry's marker has none
                data=data if isinstance(data, dict) else {},
            )
        )
    # Every fact read checked, the read's signed checkpoint is (Round 28's check, which holds
    # and relationship ends did not make, #12): its last leaf proven against the signed root.
    leaf = entries[-1].signed_leaf if entries else None
    if leaf is not None:
        await signed(leaf)
    return facts

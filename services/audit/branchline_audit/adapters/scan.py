"""The verifier's read of the ledger: every stored row in ledger order, a page at a time
(#12, docs/audit.md "Verify").

Kept apart from :mod:`branchline_audit.adapters.ledger` so that a verifying segment's process
(:mod:`branchline_audit.adapters.segments`) imports only what the read and the check need:
asyncpg, orjson and the verifier's domain modules, not the event catalogue or the settings
(the fork server's start-up, #12, docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import asyncpg

from branchline_audit.domain.verification import ROW_FIELDS

__all__ = ["scan_rows"]

# The event as its JSON text: asyncpg makes a str in C, the verifier decodes it once with
# orjson, instead of the jsonb codec's Python call per row (#12, docs/performance.md). The
# same for the three times (their 8 binary bytes, where asyncpg's codec makes a datetime in
# Python) and the event id (its text: the fast path compares text): ROW_FIELDS' other forms.
_SCAN_FORMS = {
    "event": "event::text AS event",
    "appended_at": "timestamptz_send(appended_at) AS appended_at",
    "event_id": "event_id::text AS event_id",
    "occurred_at": "timestamptz_send(occurred_at) AS occurred_at",
    "pruned_at": "timestamptz_send(pruned_at) AS pruned_at",
}
_SCAN_FIELDS = ", ".join(_SCAN_FORMS.get(f, f) for f in ROW_FIELDS)
_ROWS_AFTER = (
    f"SELECT {_SCAN_FIELDS} FROM audit_ledger "  # noqa: S608 - fixed columns
    "WHERE position > $1 ORDER BY position LIMIT $2"
)
# A segment's rows, for verification in parallel (#12).
_ROWS_BETWEEN = (
    f"SELECT {_SCAN_FIELDS} FROM audit_ledger "  # noqa: S608 - fixed columns
    "WHERE position > $1 AND position <= $3 ORDER BY position LIMIT $2"
)


async def scan_rows(
    pool: asyncpg.Pool[Any],
    *,
    page_size: int = 5000,
    after_position: int = 0,
    through: int | None = None,
) -> AsyncGenerator[Sequence[Any], None]:
    """Every stored row (:data:`ROW_FIELDS` order) in ledger order, a page at a time, from
    after ``after_position`` (up to ``through``, when given: a segment, #12). The next page
    is asked for as soon as one arrives, on a second connection, so the database reads it
    while the caller checks the one it has (the verifier's Python and PostgreSQL then work
    on the two cores at once)."""

    async def page_after(position: int) -> list[asyncpg.Record]:
        if through is None:
            return await pool.fetch(_ROWS_AFTER, position, page_size)
        return await pool.fetch(_ROWS_BETWEEN, position, page_size, through)

    pending: asyncio.Task[list[asyncpg.Record]] | None = asyncio.ensure_future(
        page_after(after_position)
    )
    try:
        while pending is not None:
            page = await pending
            pending = None
            if len(page) == page_size:
                pending = asyncio.ensure_future(page_after(page[-1][0]))
            yield page
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

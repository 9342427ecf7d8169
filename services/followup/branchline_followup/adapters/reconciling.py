"""What the followup read models applied, as reconcile compares it with the event stores."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from branchline_followup.adapters.read_models import applied_ids
from branchline_shared.events.catalogue import EventType
from branchline_shared.postgres.pool import PgPool
from branchline_shared.reconcile.compare import ORDER_FREE_TYPES, AppliedEvent


async def read_models_applied(pool: PgPool) -> list[AppliedEvent]:
    """Every event id the live read models applied (``fu_applied_events``, found through the
    pool's search_path), in the order applied, with its store and global position, and
    whether it is kept in its client's journal (``fu_client_events``, migration 010).

    A kept event is in source order in the read models whenever it arrived: the unit that
    kept it found whether a later event of its client and store was kept before, and if so
    projected the client again from the journal in source order (ADR-0014); a later one kept
    after it finds it kept. So reconcile reports such an event applied late as *late*, not
    *out of order* (#12). Not kept, and so still a difference when late: an event without a
    client (nothing re-projects it) or one applied before the journal existed."""
    rows = await pool.fetch(_APPLIED + "ORDER BY a.applied_seq")
    return _applied(rows)


_APPLIED = (
    "SELECT a.event_id, a.applied_seq, a.source, a.global_position, "
    "j.event_id IS NOT NULL AS kept "
    "FROM fu_applied_events a LEFT JOIN fu_client_events j USING (event_id) "
)


async def read_models_applied_page(
    pool: PgPool, after: int, limit: int, *, window: int | None = None
) -> list[AppliedEvent]:
    """:func:`read_models_applied`, the events applied after apply sequence ``after``, at most
    ``limit`` (a keyset page: ``branchline reconcile`` reads a page at a time, #12), read a
    window of apply sequences at a time as :func:`read_models_unordered` reads them (the BRIN
    index fu_applied_events_by_seq, migration 026)."""
    return _applied(await _windowed(pool, _APPLIED_WINDOW, [], after, limit, window=window))


_APPLIED_WINDOW = (
    _APPLIED + "WHERE a.applied_seq > $1 AND a.applied_seq <= $2 ORDER BY a.applied_seq LIMIT $3"
)


UNJUDGED_TYPES = ORDER_FREE_TYPES | {EventType.FOLLOWUP_TASK_CREATED.value}
"""The types whose order the worker's self-check does not judge: those whose order matters
to nobody, and a task creation, which the worker only marks applied (its task was written
where the creation was decided: ``projector.only_marked``), so no order of it changes the read
models. Unkept and one per task, creations were most of the check's candidates: every check
read every task's stream again, and the worker's memory at rest grew with the events applied
(131 → 162 MB from 10k to 100k in the benchmark's growth stack, #12)."""


async def read_models_unordered(
    pool: PgPool, after: int = 0, limit: int | None = None, *, window: int | None = None
) -> list[AppliedEvent]:
    """The events the live read models applied after apply sequence ``after`` (0: all) and
    did not keep in a client's journal (a product's, a staff member's, one applied before
    migration 010), but for those of :data:`UNJUDGED_TYPES`: the only ones the worker
    cannot have put in order itself, so the only streams its self-check judges the order of
    (#12). In apply order, at most ``limit`` (None: all): a keyset page, the next one after
    the last's ``seq``.

    Read a window of :data:`WINDOW` apply sequences at a time (``window`` for tests), up to
    the sequence's last value: fu_applied_events_by_seq is a BRIN index (migration 026), which
    returns its ranges as a bitmap, unordered, so a statement reading everything after
    ``after`` would read the table's whole remainder for each page of a full walk (quadratic
    in its pages); a window's statement reads only its own ranges. An incremental check reads
    what was applied since its mark (one window, the table's last pages), and a full one walks
    the table once, a page of candidates at a time (its memory bounded by a page, #12)."""
    return _applied(
        await _windowed(pool, UNORDERED, [sorted(UNJUDGED_TYPES)], after, limit, window=window)
    )


async def _windowed(
    pool: PgPool,
    statement: str,
    leading: Sequence[Any],
    after: int,
    limit: int | None,
    *,
    window: int | None = None,
) -> list[Any]:
    """``statement``'s rows (its arguments: ``leading``, then the mark, the window's end and
    the page) a window of :data:`WINDOW` apply sequences at a time from ``after``, until
    ``limit`` rows or the sequence's last value (:func:`read_models_unordered`)."""
    span = WINDOW if window is None else window
    last = await pool.fetchval(LAST_APPLIED_SEQ)
    found: list[Any] = []
    while last is not None and after < last and (limit is None or len(found) < limit):
        upto = min(after + span, last)
        rows = await pool.fetch(
            statement, *leading, after, upto, None if limit is None else limit - len(found)
        )
        found.extend(rows)
        after = upto
    return found


WINDOW = 4_096
"""Apply sequences read by one statement of :func:`read_models_unordered`. A page that fills
before its window's end leaves the rest to be read again by the next page's statement (each
row read is probed against the client journals), so the window is small: under half of one
BRIN range (128 pages, about 10,000 rows of fu_applied_events), whose pages a statement reads
whole. At 65,536 a full walk of 200,000 events (20,000 unkept, pages of 1,000) read 4-6x the
B-tree's blocks (docs/performance.md, Round 36)."""

UNORDERED = (
    "SELECT a.event_id, a.applied_seq, a.source, a.global_position, false AS kept "
    "FROM fu_applied_events a WHERE a.applied_seq > $2 AND a.applied_seq <= $3 "
    "AND a.type <> ALL($1::text[]) "
    "AND NOT EXISTS (SELECT 1 FROM fu_client_events j WHERE j.event_id = a.event_id) "
    "ORDER BY a.applied_seq LIMIT $4"
)
"""A window's statement of :func:`read_models_unordered` (``$1`` the unjudged types, ``$2``
the mark, ``$3`` the window's end, ``$4`` the page): a range of fu_applied_events_by_seq."""

LAST_APPLIED_SEQ = (
    "SELECT pg_sequence_last_value("
    "pg_get_serial_sequence('fu_applied_events', 'applied_seq')::regclass)"
)
"""The last apply sequence taken (NULL: none yet), a committed row's or not: where a walk
ends. The identity's sequence, read without a scan (``max(applied_seq)`` would read the
whole table: a BRIN index cannot answer it)."""


async def read_models_applied_among(
    pool: PgPool, event_ids: Sequence[uuid.UUID]
) -> list[AppliedEvent]:
    """Of ``event_ids``, those the live read models applied, as :func:`read_models_applied`
    tells them."""
    rows = await pool.fetch(_APPLIED + "WHERE a.event_id = ANY($1::uuid[])", list(event_ids))
    return _applied(rows)


async def read_models_order_reported(
    pool: PgPool, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Record that the self-check reported ``event_ids`` applied out of order; returns those
    no check (of this process or an earlier one) had reported (migration 025, #12)."""
    rows = await pool.fetch(
        "UPDATE fu_applied_events SET order_reported_at = now() "
        "WHERE event_id = ANY($1::uuid[]) AND order_reported_at IS NULL RETURNING event_id",
        list(event_ids),
    )
    return {r["event_id"] for r in rows}


def _applied(rows: Sequence[Any]) -> list[AppliedEvent]:
    return [
        AppliedEvent(
            r["event_id"],
            r["applied_seq"],
            r["source"],
            r["global_position"],
            source_ordered=r["kept"],
        )
        for r in rows
    ]


async def read_models_have(pool: PgPool, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``event_ids`` the live read models applied."""
    async with pool.acquire() as conn:
        return await applied_ids(conn, event_ids)

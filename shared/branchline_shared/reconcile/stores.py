"""The event stores' side of reconciliation: their logs as reconcile compares them, and the
repair, which queues missing events in the store's outbox again (the relay publishes them;
consumers drop what they had already applied, by event id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.postgres.pool import PgConnection
from branchline_shared.reconcile.compare import StoreEvent
from branchline_shared.reconcile.progress import Copy


async def read_store_log(conn: PgConnection, source: str, *, grace_s: float) -> list[StoreEvent]:
    """Every committed event of the store, in log order, with whether it is still in
    flight: its outbox row not yet published, or published less than ``grace_s`` ago, or
    its transaction not yet below the snapshot's xmin (the log reader's gap-safe rule: an
    older transaction may still commit before it). Such an event may already be applied,
    so it is known (never counted extra) but not yet owed (never counted missing)."""
    rows = await conn.fetch(
        """
        WITH outbox AS (
            SELECT event_id, min(topic) AS topic, bool_or(published_at IS NULL) AS unpublished,
                   max(published_at) AS published_at
            FROM es_outbox GROUP BY event_id
        )
        SELECT e.tx_id::text::bigint AS tx, e.global_position, e.event_id, e.stream_id,
               e.stream_version, e.client_id, e.type, o.topic,
               (o.unpublished OR o.published_at > now() - make_interval(secs => $1)
                OR e.tx_id >= pg_snapshot_xmin(pg_current_snapshot())) AS in_flight
        FROM es_events e JOIN outbox o USING (event_id)
        ORDER BY e.tx_id, e.global_position
        """,
        grace_s,
    )
    return [store_event(source, r, r["topic"]) for r in rows]


async def read_store_log_page(
    conn: PgConnection, source: str, *, after: LogPosition, limit: int, grace_s: float
) -> list[StoreEvent]:
    """:func:`read_store_log`, up to ``limit`` events after ``after`` (a keyset page of the
    log, for ``branchline reconcile``'s paged walk, #12): each event's outbox rows looked up
    for it (by event id), not the whole outbox grouped for every page."""
    rows = await conn.fetch(
        """
        SELECT e.tx_id::text::bigint AS tx, e.global_position, e.event_id, e.stream_id,
               e.stream_version, e.client_id, e.type, o.topic,
               (o.unpublished OR o.published_at > now() - make_interval(secs => $1)
                OR e.tx_id >= pg_snapshot_xmin(pg_current_snapshot())) AS in_flight
        FROM es_events e
        CROSS JOIN LATERAL (
            SELECT min(topic) AS topic, bool_or(published_at IS NULL) AS unpublished,
                   max(published_at) AS published_at
            FROM es_outbox WHERE es_outbox.event_id = e.event_id
        ) o
        WHERE (e.tx_id, e.global_position) > ($2::text::xid8, $3) AND o.topic IS NOT NULL
        ORDER BY e.tx_id, e.global_position
        LIMIT $4
        """,
        grace_s,
        str(after.tx_id),
        after.global_position,
        limit,
    )
    return [store_event(source, r, r["topic"]) for r in rows]


async def read_stream_page(
    conn: PgConnection, source: str, *, before: tuple[str, int] | None, limit: int
) -> list[StoreEvent]:
    """Up to ``limit`` events of the store (those with an outbox row, as
    :func:`read_store_log` reads them) by its stream index from the highest ``(stream_id,
    stream_version)`` down, below ``before`` (None: from the top): a keyset page of every
    stream, each stream's versions from its highest down (:class:`~.compare.StreamWalk`,
    ``branchline reconcile``'s order walk, #12)."""
    query = """
        SELECT tx_id::text::bigint AS tx, global_position, event_id, stream_id,
               stream_version, client_id, type, false AS in_flight
        FROM es_events e
        WHERE {bound} EXISTS (SELECT 1 FROM es_outbox o WHERE o.event_id = e.event_id)
        ORDER BY stream_id DESC, stream_version DESC
        LIMIT $1
        """
    if before is None:
        rows = await conn.fetch(query.format(bound=""), limit)
    else:
        rows = await conn.fetch(
            query.format(bound="(stream_id, stream_version) < ($2, $3) AND"),
            limit,
            before[0],
            before[1],
        )
    return [store_event(source, r, "") for r in rows]


async def stored_ids(conn: PgConnection, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``event_ids`` the store has (with an outbox row, as :func:`read_store_log`
    reads its events): what ``branchline reconcile``'s walk of a consumer's applied events
    asks to find the extra ones a page at a time (#12)."""
    rows = await conn.fetch(
        "SELECT e.event_id FROM es_events e WHERE e.event_id = ANY($1::uuid[]) "
        "AND EXISTS (SELECT 1 FROM es_outbox o WHERE o.event_id = e.event_id)",
        list(event_ids),
    )
    return {r["event_id"] for r in rows}


def store_event(source: str, row: Any, topic: str) -> StoreEvent:
    """A store's row (:func:`read_store_log`, :func:`read_store_rows`) as reconcile keeps it."""
    return StoreEvent(
        source=source,
        event_id=row["event_id"],
        log_position=LogPosition(row["tx"], row["global_position"]),
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        client_id=row["client_id"],
        topic=topic,
        in_flight=bool(row["in_flight"]),
        type=row.get("type", ""),
    )


async def requeue(conn: PgConnection, events: Iterable[StoreEvent]) -> int:
    """Queue ``events`` for publication again (new outbox rows, in log order); returns how
    many. Idempotent downstream: every consumer skips an event id it has applied.

    The rows are marked ``requeued`` (eventstore migration 005), so the relay publishes them
    with the ``requeued`` header: a consumer that skips the first publication of its own
    events unread (the followup worker, #12) applies a re-queued one, which is why it was
    re-queued."""
    ordered: Sequence[StoreEvent] = sorted(
        {e.event_id: e for e in events}.values(),
        key=lambda e: (e.log_position.tx_id, e.log_position.global_position),
    )
    if not ordered:
        return 0
    # The key of the event's first outbox row (its subject: a product's or a staff member's
    # events have no client), so the copy lands on the partition of the original. Looked up
    # for all events at once, not per event with "ORDER BY id LIMIT 1": without statistics
    # on the outbox (a fill autovacuum has not analysed yet, exactly when a lagging consumer
    # has the most re-queued) PostgreSQL ran that along the primary key for each event, 10 s
    # for 946 events in a 20,000-row outbox, 70 s for 2,827 in 60,000 (#12,
    # bench/profile_self_check.py).
    await conn.execute(
        "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY "
        "           AS u(event_id, topic, n)), "
        "first AS (SELECT DISTINCT ON (o.event_id) o.event_id, o.message_key FROM es_outbox o "
        "          WHERE o.event_id = ANY($1::uuid[]) ORDER BY o.event_id, o.id) "
        "INSERT INTO es_outbox (event_id, topic, message_key, requeued) "
        "SELECT u.event_id, u.topic, first.message_key, true "
        "FROM u LEFT JOIN first USING (event_id) ORDER BY u.n",
        [e.event_id for e in ordered],
        [e.topic for e in ordered],
    )
    return len(ordered)


def event_ids(events: Iterable[StoreEvent]) -> set[uuid.UUID]:
    return {e.event_id for e in events}


async def read_store_page(
    conn: PgConnection, source: str, *, after: LogPosition, limit: int
) -> list[StoreEvent]:
    """Up to ``limit`` events of the store after ``after``, in log order, without their outbox
    state: ``in_flight`` here only says that the writing transaction is not yet below the
    snapshot's xmin (an older one may still commit before it). :func:`outbox_states` adds
    the outbox's part for the events that need it."""
    rows = await read_store_rows(conn, after=after, limit=limit)
    return [store_event(source, r, "") for r in rows]


async def read_store_rows(conn: PgConnection, *, after: LogPosition, limit: int) -> list[Any]:
    """:func:`read_store_page`'s rows as the driver returns them (``tx``, ``global_position``,
    ``event_id``, ``stream_id``, ``stream_version``, ``client_id``, ``in_flight``), for a
    caller that builds a :class:`StoreEvent` (:func:`store_event`) only for the few it keeps:
    a self-check reads tens of thousands of events a run and keeps almost none, and building
    an object per event was most of its Python, on the consumer's event loop (#12)."""
    rows: list[Any] = await conn.fetch(
        """
        SELECT tx_id::text::bigint AS tx, global_position, event_id, stream_id,
               stream_version, client_id,
               tx_id >= pg_snapshot_xmin(pg_current_snapshot()) AS in_flight
        FROM es_events
        WHERE (tx_id, global_position) > ($1::text::xid8, $2)
        ORDER BY tx_id, global_position
        LIMIT $3
        """,
        str(after.tx_id),
        after.global_position,
        limit,
    )
    return rows


@dataclass(frozen=True)
class OutboxState:
    """An event's outbox rows, as a self-check needs them."""

    topic: str
    in_flight: bool
    """A row not yet published, or one published less than the grace period ago."""
    copies: tuple[Copy, ...]
    """Each row, with where the broker put it if that was recorded (migration 004)."""


async def outbox_states(
    conn: PgConnection, event_ids: Sequence[uuid.UUID], *, grace_s: float
) -> dict[uuid.UUID, OutboxState]:
    """Of each of ``event_ids`` with an outbox row: its topic, whether it is in flight (as
    :func:`read_store_log` judges it) and its rows' broker positions."""
    rows = await conn.fetch(
        """
        SELECT event_id, min(topic) AS topic,
               bool_or(published_at IS NULL)
               OR max(published_at) > now() - make_interval(secs => $2) AS in_flight,
               array_agg(topic ORDER BY id) AS topics,
               array_agg(published_partition ORDER BY id) AS partitions,
               array_agg(published_offset ORDER BY id) AS offsets
        FROM es_outbox WHERE event_id = ANY($1::uuid[]) GROUP BY event_id
        """,
        list(event_ids),
        grace_s,
    )
    return {
        r["event_id"]: OutboxState(
            r["topic"],
            bool(r["in_flight"]),
            tuple(
                Copy(topic, partition, offset)
                for topic, partition, offset in zip(
                    r["topics"], r["partitions"], r["offsets"], strict=True
                )
            ),
        )
        for r in rows
    }


async def streams_of(conn: PgConnection, event_ids: Sequence[uuid.UUID]) -> list[str]:
    """The streams of those of ``event_ids`` this store has (by its ``event_id`` key)."""
    rows = await conn.fetch(
        "SELECT DISTINCT stream_id FROM es_events WHERE event_id = ANY($1::uuid[])",
        list(event_ids),
    )
    return [r["stream_id"] for r in rows]


async def read_streams(
    conn: PgConnection, source: str, stream_ids: Sequence[str]
) -> list[StoreEvent]:
    """Every event of ``stream_ids``, in log order: what a self-check needs to judge those
    streams' order (:mod:`.ordering`), found by the ``(stream_id, stream_version)`` index
    instead of reading the whole log."""
    rows = await conn.fetch(
        """
        SELECT tx_id::text::bigint AS tx, global_position, event_id, stream_id,
               stream_version, client_id, type, false AS in_flight
        FROM es_events
        WHERE stream_id = ANY($1::text[])
        ORDER BY tx_id, global_position
        """,
        list(stream_ids),
    )
    return [store_event(source, r, "") for r in rows]

"""The client journal on PostgreSQL (``fu_client_events``, migration 010; #13, ADR-0014): every
applied event of a client with its place in its store, and the removal of what a client's own
events wrote before it is projected again in source order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from branchline_followup.adapters.json_rows import rows_argument
from branchline_followup.application.ports import JournaledEvent
from branchline_followup.domain.source_order import SourcePlace, recorded_ms
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.sealing_keys import STAFF_KEY_PREFIX
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection

CLEAR_CLIENT = (
    # Tasks an event without a client caused (a re-rating's review, a gift's escalation) stay
    # with their timers: replaying the client's own events would not make them again.
    """DELETE FROM fu_timers WHERE client_id = $1 AND task_id NOT IN (
           SELECT id FROM fu_tasks WHERE client_id = $1 AND source_event_id NOT IN (
               SELECT event_id FROM fu_client_events WHERE client_id = $1))""",
    """DELETE FROM fu_tasks WHERE client_id = $1 AND source_event_id IN (
           SELECT event_id FROM fu_client_events WHERE client_id = $1)""",
    "DELETE FROM fu_clients WHERE client_id = $1",
    "DELETE FROM fu_client_timeline WHERE client_id = $1",
    "DELETE FROM fu_client_consents WHERE client_id = $1",
    "DELETE FROM fu_client_assessments WHERE client_id = $1",
    "DELETE FROM fu_visits WHERE client_id = $1",
    "DELETE FROM fu_surveys WHERE client_id = $1",
    "DELETE FROM fu_complaints WHERE client_id = $1",
    "DELETE FROM fu_corrective_actions WHERE client_id = $1",
    "DELETE FROM fu_renegotiations WHERE client_id = $1",
    "DELETE FROM fu_business_events WHERE client_id = $1",
    "DELETE FROM fu_holdings WHERE client_id = $1",
    "DELETE FROM fu_personal_values WHERE client_id = $1",
    "DELETE FROM fu_privacy WHERE client_id = $1",
)
"""What a client's own events wrote, in every read model keyed by the client. Not cleared:
fu_applied_events and fu_client_events (the events stay applied and kept), fu_refusals (one row
per refusal event, written whatever the order), fu_product_ratings, fu_staff and
fu_staff_training (events without a client). A new read-model table keyed by a client belongs
here (``tests/integration/followup/test_followup_order.py`` compares every table)."""

# The in-order check and the keeping in one statement (one round trip, one index probe): the
# sub-select sees the rows before this insert. Without a position (NULL) the event is never
# found late (a row comparison with a NULL is true when the milliseconds differ, hence the
# explicit test), as ``domain.source_order.arrives_late`` says.
_KEEP = """
WITH later AS (
    SELECT $4::bigint IS NOT NULL AND EXISTS (
        SELECT 1 FROM fu_client_events
        WHERE client_id = $2 AND source = $3 AND global_position IS NOT NULL
          AND (recorded_ms, global_position) > ($5, $4)
    ) AS late
)
INSERT INTO fu_client_events (event_id, client_id, source, global_position, recorded_ms, envelope)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (event_id) DO NOTHING
RETURNING (SELECT late FROM later)
"""

KEEP_ROW = (
    "INSERT INTO fu_client_events "
    "(event_id, client_id, source, global_position, recorded_ms, envelope) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING"
)
"""A kept event written without the check (:func:`journal_row`; the caller checked)."""

Place = tuple[int, int]
"""(recorded millisecond, global position): a kept event's place within its client and store."""


def journal_row(event: RecordedEvent, position: SourcePosition | None) -> tuple[Any, ...]:
    """The arguments of :data:`KEEP_ROW` (and of the check) for ``event`` of a client."""
    return (
        event.event_id,
        event.client_id,
        position.source if position else event.source,
        position.global_position if position else None,
        recorded_ms(event.recorded_at),
        event.model_dump(mode="json"),
    )


async def keep(conn: PgConnection, event: RecordedEvent, position: SourcePosition | None) -> bool:
    if event.client_id is None:
        return False
    late = await conn.fetchval(_KEEP, *journal_row(event, position))
    return bool(late)


def latest_places_query(pairs: str) -> str:
    """The query of :func:`latest_places`, its pairs given as one JSON argument of [client,
    store] rows (the placeholder ``pairs``, :func:`.json_rows.rows_argument`, #12: no array
    checked in Python); also a branch of the batch's read-ahead."""
    return f"""
        SELECT pair.client_id, pair.source, m.recorded_ms, m.global_position
        FROM (
            SELECT r->>0 AS client_id, r->>1 AS source
            FROM jsonb_array_elements({pairs}::text::jsonb) AS e(r)
        ) pair
        CROSS JOIN LATERAL (
            SELECT recorded_ms, global_position FROM fu_client_events e
            WHERE e.client_id = pair.client_id AND e.source = pair.source
              AND e.global_position IS NOT NULL
            ORDER BY recorded_ms DESC, global_position DESC LIMIT 1
        ) m"""  # noqa: S608 - placeholders, not values


async def latest_places(
    conn: PgConnection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Place]:
    """The latest positioned place kept of each (client, store), in one statement (#12: one
    index probe each, whatever the client's history); pairs with none are left out."""
    rows = await conn.fetch(latest_places_query("$1"), rows_argument(pairs))
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


async def of_client(conn: PgConnection, client_id: str) -> list[JournaledEvent]:
    rows = await conn.fetch(
        "SELECT event_id, source, global_position, recorded_ms, envelope "
        "FROM fu_client_events WHERE client_id = $1",
        client_id,
    )
    return [
        JournaledEvent(
            RecordedEvent.model_validate(r["envelope"]),
            SourcePlace(r["event_id"], r["source"], r["recorded_ms"], r["global_position"]),
        )
        for r in rows
    ]


KEPT_FOR_STAFF = frozenset({"DELETE FROM fu_personal_values WHERE client_id = $1"})
"""Not removed for a member of staff's key id (``#staff/<id>``), under which the tasks of their
access request are held: their texts are kept there by their staff events, which no journal
holds, so a re-projection of those tasks (a late ``followup.*`` event) would not make them
again."""


async def clear_read_models(conn: PgConnection, client_id: str) -> None:
    staff = client_id.startswith(STAFF_KEY_PREFIX)
    for statement in CLEAR_CLIENT:
        if staff and statement in KEPT_FOR_STAFF:
            continue
        await conn.execute(statement, client_id)

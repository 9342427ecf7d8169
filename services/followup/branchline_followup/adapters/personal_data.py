"""The personal-data read models (``fu_personal_values``, ``fu_privacy``; D-04).

Only sealed values are stored (the ciphertext intake or followup wrote into the event); the
clear value exists only in the memory of an access request being answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from branchline_followup.domain.records import PrivacyState as PrivacyState
from branchline_followup.domain.records import SealedValue as SealedValue
from branchline_shared.crypto.sealing import is_sealed, map_personal
from branchline_shared.events.catalogue import PERSONAL_FIELDS, EventType
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.postgres.pool import PgConnection

ERASURE_REQUESTED = EventType.CLIENT_ERASURE_REQUESTED.value
PERSONAL_DATA_SHREDDED = EventType.CLIENT_PERSONAL_DATA_SHREDDED.value


def sealed_values_of(event: RecordedEvent) -> list[SealedValue]:
    """The sealed personal values an event carries (clear ones are never picked up)."""
    found: list[SealedValue] = []

    def collect(value: Any, path: str) -> Any:
        # the sub key is what sealing bound the value to: an object's key, a list's index
        pairs: Iterable[tuple[Any, Any]] = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else [("", value)]
        )
        for sub_key, item in pairs:
            if is_sealed(item):
                found.append(
                    SealedValue(
                        event.event_id, event.type, path, str(sub_key), item, event.occurred_at
                    )
                )
        return value

    map_personal(event.data, PERSONAL_FIELDS.get(event.type, ()), collect)
    return found


async def apply_personal_data(conn: PgConnection, event: RecordedEvent) -> None:
    """The personal-data read models after ``event`` (in the projector's transaction)."""
    if event.type == PERSONAL_DATA_SHREDDED:
        await conn.execute(
            "INSERT INTO fu_privacy (client_id, shredded_at, shred_event_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (client_id) DO UPDATE SET "
            "shredded_at = coalesce(fu_privacy.shredded_at, EXCLUDED.shredded_at), "
            "shred_event_id = coalesce(fu_privacy.shred_event_id, EXCLUDED.shred_event_id)",
            event.client_id,
            event.occurred_at,
            event.event_id,
        )
        # The read models hide what the key no longer opens: not even ciphertext stays.
        await conn.execute("DELETE FROM fu_personal_values WHERE client_id = $1", event.client_id)
        return
    if event.type == ERASURE_REQUESTED:
        await conn.execute(
            "INSERT INTO fu_privacy (client_id, erasure_requested_at, erasure_event_id) "
            "VALUES ($1, $2, $3) ON CONFLICT (client_id) DO UPDATE SET "
            "erasure_requested_at = coalesce(fu_privacy.erasure_requested_at, "
            "EXCLUDED.erasure_requested_at), "
            "erasure_event_id = coalesce(fu_privacy.erasure_event_id, EXCLUDED.erasure_event_id)",
            event.client_id,
            event.occurred_at,
            event.event_id,
        )
    values = sealed_values_of(event)
    if not values:
        return
    state = await privacy_state(conn, event.subject_id)
    if state is None or not state.shredded:  # a late copy after shredding keeps nothing
        await conn.executemany(
            "INSERT INTO fu_personal_values "
            "(client_id, event_id, event_type, path, sub_key, sealed, occurred_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                (
                    event.client_id,
                    v.event_id,
                    v.event_type,
                    v.path,
                    v.sub_key,
                    v.sealed,
                    v.occurred_at,
                )
                for v in values
            ],
        )


async def privacy_state(conn: PgConnection, client_id: str) -> PrivacyState | None:
    row = await conn.fetchrow(
        "SELECT client_id, erasure_requested_at, erasure_event_id, shredded_at, "
        "shred_event_id FROM fu_privacy WHERE client_id = $1",
        client_id,
    )
    return None if row is None else PrivacyState(**dict(row))


async def pending_erasures(conn: PgConnection) -> list[PrivacyState]:
    rows = await conn.fetch(
        "SELECT client_id, erasure_requested_at, erasure_event_id, shredded_at, shred_event_id "
        "FROM fu_privacy WHERE erasure_requested_at IS NOT NULL AND shredded_at IS NULL "
        "ORDER BY erasure_requested_at, client_id"
    )
    return [PrivacyState(**dict(r)) for r in rows]


async def personal_values(conn: PgConnection, client_id: str) -> list[SealedValue]:
    rows = await conn.fetch(
        "SELECT event_id, event_type, path, sub_key, sealed, occurred_at "
        "FROM fu_personal_values WHERE client_id = $1 "
        "ORDER BY occurred_at, event_id, path, sub_key",
        client_id,
    )
    return [SealedValue(**dict(r)) for r in rows]

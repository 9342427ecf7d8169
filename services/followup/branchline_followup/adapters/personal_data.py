"""The personal-data read models (``fu_personal_values``, ``fu_privacy``, and for members of
staff ``fu_staff_privacy``, ``fu_staff_gift_clients``; D-04).

Only sealed values are stored (the ciphertext intake or followup wrote into the event); the
clear value exists only in the memory of an access request being answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from branchline_followup.domain.records import PrivacyState as PrivacyState
from branchline_followup.domain.records import SealedValue as SealedValue
from branchline_followup.domain.records import StaffPrivacyState as StaffPrivacyState
from branchline_shared.crypto.sealing import is_sealed, map_personal
from branchline_shared.events.catalogue import PERSONAL_FIELDS, EventType
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.sealing_keys import staff_key_id
from branchline_shared.postgres.pool import PgConnection

ERASURE_REQUESTED = EventType.CLIENT_ERASURE_REQUESTED.value
PERSONAL_DATA_SHREDDED = EventType.CLIENT_PERSONAL_DATA_SHREDDED.value
STAFF_ERASURE_REQUESTED = EventType.STAFF_ERASURE_REQUESTED.value
STAFF_PERSONAL_DATA_SHREDDED = EventType.STAFF_PERSONAL_DATA_SHREDDED.value
STAFF_GIFT_RECORDED = EventType.STAFF_GIFT_RECORDED.value


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


async def apply_staff_privacy(conn: PgConnection, event: RecordedEvent) -> None:
    """A member of staff's erasure read models after ``event`` (in the projector's
    transaction), and their sealed texts, kept under their key id like a client's values
    (what answers their access request, D-04)."""
    staff_id = event.staff_id
    if staff_id is None:
        return
    await _keep_staff_values(conn, event, staff_id)
    if event.type == STAFF_ERASURE_REQUESTED:
        ended = event.data.get("employment_ended_at")
        # The first request starts the restriction; a later one naming the end of employment
        # (the start of the retention, D-11) sets it.
        await conn.execute(
            "INSERT INTO fu_staff_privacy (staff_id, erasure_requested_at, erasure_event_id, "
            "employment_ended_at) VALUES ($1, $2, $3, $4) ON CONFLICT (staff_id) DO UPDATE SET "
            "employment_ended_at = coalesce(EXCLUDED.employment_ended_at, "
            "fu_staff_privacy.employment_ended_at), erasure_requested_at = "
            "least(fu_staff_privacy.erasure_requested_at, EXCLUDED.erasure_requested_at)",
            staff_id,
            event.occurred_at,
            event.event_id,
            None if ended is None else datetime.fromisoformat(str(ended)),
        )
    elif event.type == STAFF_PERSONAL_DATA_SHREDDED:
        # Applied before its request too (a rebuild reads followup's store and intake's in
        # either order): the shredding names the request, and the request's time then wins.
        await conn.execute(
            "INSERT INTO fu_staff_privacy (staff_id, erasure_requested_at, erasure_event_id, "
            "shredded_at, shred_event_id) VALUES ($1, $2, $3, $2, $4) "
            "ON CONFLICT (staff_id) DO UPDATE SET "
            "shredded_at = coalesce(fu_staff_privacy.shredded_at, EXCLUDED.shredded_at), "
            "shred_event_id = coalesce(fu_staff_privacy.shred_event_id, EXCLUDED.shred_event_id)",
            staff_id,
            event.occurred_at,
            uuid.UUID(str(event.data["erasure_event_id"])),
            event.event_id,
        )
    elif event.type == STAFF_GIFT_RECORDED and isinstance(event.data.get("client_id"), str):
        await conn.execute(
            "INSERT INTO fu_staff_gift_clients (staff_id, client_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING",
            staff_id,
            event.data["client_id"],
        )


async def _keep_staff_values(conn: PgConnection, event: RecordedEvent, staff_id: str) -> None:
    key_id = staff_key_id(staff_id)
    if event.type == STAFF_PERSONAL_DATA_SHREDDED:
        # as for a client: what the key no longer opens is not kept, not even its ciphertext
        await conn.execute("DELETE FROM fu_personal_values WHERE client_id = $1", key_id)
        return
    values = sealed_values_of(event)
    if not values:
        return
    shredded = await conn.fetchval(
        "SELECT shredded_at IS NOT NULL FROM fu_staff_privacy WHERE staff_id = $1", staff_id
    )
    if shredded:  # a late copy after shredding keeps nothing
        return
    await conn.executemany(
        "INSERT INTO fu_personal_values "
        "(client_id, event_id, event_type, path, sub_key, sealed, occurred_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        [
            (key_id, v.event_id, v.event_type, v.path, v.sub_key, v.sealed, v.occurred_at)
            for v in values
        ],
    )


_STAFF_PRIVACY = (
    "SELECT p.staff_id, p.erasure_requested_at, p.erasure_event_id, p.employment_ended_at, "
    "p.shredded_at, p.shred_event_id, s.branch_id, "
    "coalesce((SELECT array_agg(g.client_id ORDER BY g.client_id) FROM fu_staff_gift_clients g "
    "WHERE g.staff_id = p.staff_id), '{}') AS gift_clients "
    "FROM fu_staff_privacy p LEFT JOIN fu_staff s ON s.staff_id = p.staff_id "
)


def _staff_privacy(row: Any) -> StaffPrivacyState:
    values = dict(row)
    values["gift_clients"] = tuple(values["gift_clients"])
    return StaffPrivacyState(**values)


async def staff_privacy_state(conn: PgConnection, staff_id: str) -> StaffPrivacyState | None:
    row = await conn.fetchrow(_STAFF_PRIVACY + "WHERE p.staff_id = $1", staff_id)
    return None if row is None else _staff_privacy(row)


async def pending_staff_erasures(conn: PgConnection) -> list[StaffPrivacyState]:
    rows = await conn.fetch(
        _STAFF_PRIVACY + "WHERE p.shredded_at IS NULL ORDER BY p.erasure_requested_at, p.staff_id"
    )
    return [_staff_privacy(r) for r in rows]

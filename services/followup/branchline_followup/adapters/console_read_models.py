"""The read models of the console's client page: timeline, consents in force, the latest
risk assessment. Written by the projector in the transaction that applies each event (so a
redelivery changes nothing and a rebuild makes them again); read by the console."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from branchline_shared.events.catalogue import (
    ClientConsentGranted,
    ClientConsentWithdrawn,
    ClientRiskAssessed,
    EventType,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded
from branchline_shared.postgres.pool import PgConnection, PgPool
from branchline_shared.postgres.row_guard import decode_row, readable, select_list

TIMELINE_LIMIT = 200


TIMELINE_INSERT = (
    "INSERT INTO fu_client_timeline "
    "(client_id, occurred_at, event_id, type, branch_id, actor_id, actor_role) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
)


def timeline_row(event: RecordedEvent, client_id: str) -> tuple[Any, ...]:
    """The arguments of :data:`TIMELINE_INSERT` for ``event``."""
    return (
        client_id,
        event.occurred_at,
        event.event_id,
        event.type,
        event.branch_id,
        event.actor.id,
        event.actor.role,
    )


CONSENT_UPSERT = (
    "INSERT INTO fu_client_consents AS c "
    "(client_id, purpose, granted, changed_at, expires_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id, purpose) DO UPDATE "
    "SET granted = $3, changed_at = $4, expires_at = $5 "
    "WHERE c.changed_at <= $4"
)
ASSESSMENT_UPSERT = (
    "INSERT INTO fu_client_assessments AS a "
    "(client_id, level, assessed_at, valid_until, event_id) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE "
    "SET level = $2, assessed_at = $3, valid_until = $4, event_id = $5 "
    "WHERE a.assessed_at <= $3"
)

ConsoleRow = tuple[str, tuple[Any, ...]]
"""A statement of the client page's consents or assessment and its arguments (the client's id
first)."""


def console_rows(typed: Decoded, client_id: str) -> list[ConsoleRow]:
    """What the event writes of the client page besides its timeline row, in order: a consent
    row per purpose, or the latest assessment (each upsert keeps the later instant)."""
    event = typed.envelope
    if event.type not in _READ_HERE:
        return []
    payload = typed.payload
    if isinstance(payload, ClientConsentGranted | ClientConsentWithdrawn):
        granted = isinstance(payload, ClientConsentGranted)
        expires = payload.expires_at if isinstance(payload, ClientConsentGranted) else None
        return [
            (
                CONSENT_UPSERT,
                (client_id, purpose.value, granted, event.occurred_at, expires),
            )
            for purpose in payload.purposes
        ]
    if isinstance(payload, ClientRiskAssessed):
        return [
            (
                ASSESSMENT_UPSERT,
                (
                    client_id,
                    payload.level.value,
                    event.occurred_at,
                    payload.valid_until,
                    event.event_id,
                ),
            )
        ]
    return []


async def apply_for_console(
    conn: PgConnection, typed: Decoded, client_id: str, *, timeline: bool = True
) -> None:
    """Within the projector's transaction, after the event was marked applied; ``client_id``
    is the event's (events of other subjects have no client page). ``timeline=False``: the
    caller writes the timeline row itself (a rebuild, in bulk per batch)."""
    if timeline:
        await conn.execute(TIMELINE_INSERT, *timeline_row(typed.envelope, client_id))
    for sql, args in console_rows(typed, client_id):
        await conn.execute(sql, *args)


_READ_HERE = frozenset(
    {
        EventType.CLIENT_CONSENT_GRANTED,
        EventType.CLIENT_CONSENT_WITHDRAWN,
        EventType.CLIENT_RISK_ASSESSED,
    }
)
"""The types whose payload this page reads (every type goes into the timeline)."""


@dataclass(frozen=True)
class Assessment:
    level: str
    assessed_at: datetime
    valid_until: datetime | None


@dataclass(frozen=True)
class ClientPageRecords:
    timeline: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    assessment: Assessment | None


async def client_page_records(pool: PgPool, client_id: str) -> ClientPageRecords:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        # Instants through the row guard: a bad row is left out (issue 9).
        timeline = await conn.fetch(
            f"SELECT {_TIMELINE_SELECT} "  # noqa: S608 - fixed identifiers, bound values
            "FROM fu_client_timeline WHERE client_id = $1 "
            "ORDER BY fu_client_timeline.occurred_at DESC, event_id DESC LIMIT $2",
            client_id,
            TIMELINE_LIMIT,
        )
        consents = await conn.fetch(
            f"SELECT {_CONSENT_SELECT} FROM fu_client_consents "  # noqa: S608 - fixed identifiers, bound values
            "WHERE client_id = $1 ORDER BY purpose",
            client_id,
        )
        assessment = await conn.fetchrow(
            f"SELECT {_ASSESSMENT_SELECT} FROM fu_client_assessments "  # noqa: S608 - fixed identifiers, bound values
            "WHERE client_id = $1",
            client_id,
        )
    return ClientPageRecords(
        timeline=readable(timeline, query="console.timeline"),
        consents=readable(consents, query="console.consents"),
        assessment=None
        if assessment is None
        else decode_row(assessment, lambda a: Assessment(**a), query="console.assessment"),
    )


_TIMELINE_SELECT = select_list(
    ["occurred_at", "event_id", "type", "branch_id", "actor_id", "actor_role"],
    instants={"occurred_at"},
)
_CONSENT_SELECT = select_list(
    ["purpose", "granted", "changed_at", "expires_at"], instants={"changed_at", "expires_at"}
)
_ASSESSMENT_SELECT = select_list(
    ["level", "assessed_at", "valid_until"], instants={"assessed_at", "valid_until"}
)

"""SQL of the service-loop facts (D-09, D-17), write side: complaint classification, root
cause, corrective actions, renegotiated promises, business events and account status. Called by
the projector in the transaction that applies the event, so a rebuild reproduces them."""

from __future__ import annotations

from typing import Any

from branchline_shared.events import catalogue as c
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.postgres.pool import PgConnection

_T = c.EventType


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else str(value)


async def record_service_loop_facts(
    conn: PgConnection, event: RecordedEvent, rm_id: str | None
) -> None:
    """The facts ``event`` adds to the service-loop tables (nothing for other types). Only
    closed codes and ids are stored: the sealed free texts stay in the events."""
    data = event.data
    at = event.occurred_at
    match event.type:
        case _T.COMPLAINT_RECEIVED:
            await conn.execute(
                "UPDATE fu_complaints SET problem = $3, product_id = $4, product_category = $5, "
                "complex_case = $6 WHERE client_id = $1 AND complaint_id = $2",
                event.client_id,
                str(data["complaint_id"]),
                _text(data, "problem"),
                _text(data, "product_id"),
                _text(data, "product_category"),
                data.get("complex") is True,
            )
        case _T.COMPLAINT_PROGRESS_REPORTED if data.get("complex") is True:
            await conn.execute(
                "UPDATE fu_complaints SET complex_case = true "
                "WHERE client_id = $1 AND complaint_id = $2",
                event.client_id,
                str(data["complaint_id"]),
            )
        case _T.COMPLAINT_RESOLVED if data.get("root_cause") is not None:
            await conn.execute(
                "UPDATE fu_complaints SET root_cause = $3 "
                "WHERE client_id = $1 AND complaint_id = $2",
                event.client_id,
                str(data["complaint_id"]),
                str(data["root_cause"]),
            )
        case _T.COMPLAINT_CORRECTIVE_ACTION_PLANNED:
            await conn.execute(
                """
                INSERT INTO fu_corrective_actions (client_id, complaint_id, action_id, branch_id,
                    root_cause, action_kind, owner_id, planned_at, due_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::timestamptz)
                ON CONFLICT DO NOTHING
                """,
                event.client_id,
                str(data["complaint_id"]),
                str(data["action_id"]),
                event.branch_id,
                str(data["root_cause"]),
                str(data["action_kind"]),
                str(data["owner_id"]),
                at,
                str(data["due_at"]),
            )
        case _T.COMPLAINT_CORRECTIVE_ACTION_COMPLETED:
            await conn.execute(
                "UPDATE fu_corrective_actions SET completed_at = COALESCE(completed_at, $4) "
                "WHERE client_id = $1 AND complaint_id = $2 AND action_id = $3",
                event.client_id,
                str(data["complaint_id"]),
                str(data["action_id"]),
                at,
            )
        case _T.COMPLAINT_PROMISE_RENEGOTIATED | _T.CONSULTATION_PROMISE_RENEGOTIATED:
            subject = (
                f"complaint:{data['complaint_id']}"
                if "complaint_id" in data
                else f"consultation:{data['consultation_id']}"
            )
            await conn.execute(
                """
                INSERT INTO fu_renegotiations (event_id, client_id, branch_id, rm_id, subject,
                    reason, renegotiated_at, promised_by)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz)
                ON CONFLICT DO NOTHING
                """,
                event.event_id,
                event.client_id,
                event.branch_id,
                rm_id,
                subject,
                str(data["reason"]),
                at,
                str(data["promised_by"]),
            )
        case _T.VISIT_BUSINESS_HANDLED | _T.PRODUCT_SOLD:
            await conn.execute(
                """
                INSERT INTO fu_business_events (event_id, client_id, occurred_at, product_risk,
                    amount)
                VALUES ($1, $2, $3, $4, $5::text::numeric) ON CONFLICT DO NOTHING
                """,
                event.event_id,
                event.client_id,
                at,
                _text(data, "product_risk"),
                _text(data, "amount"),
            )
        case _T.CLIENT_ACCOUNT_CLOSED | _T.CLIENT_ACCOUNT_REOPENED:
            reason = str(data["reason"]) if event.type == _T.CLIENT_ACCOUNT_CLOSED else None
            await conn.execute(
                "UPDATE fu_clients SET account_closure_reason = $2 WHERE client_id = $1",
                event.client_id,
                reason,
            )
        case _:
            pass

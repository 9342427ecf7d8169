"""SQL of the service-loop facts (D-09, D-17), write side: complaint classification, root
cause, corrective actions, renegotiated promises, business events and account status. Called by
the projector in the transaction that applies the event, so a rebuild reproduces them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from branchline_followup.adapters.collected_writes import (
    BUSINESS,
    COMPLAINT_SET,
    COMPLETED,
    PLANNED,
    RENEGOTIATION,
    ServiceLoopRow,
)
from branchline_shared.events import catalogue as c
from branchline_shared.events.typed import Decoded
from branchline_shared.events.vocabulary import RootCause
from branchline_shared.postgres.pool import PgConnection


def _code(value: StrEnum | None) -> str | None:
    return None if value is None else value.value


COMPLAINT_FACT_TYPES = frozenset(
    {
        c.EventType.COMPLAINT_RECEIVED,
        c.EventType.COMPLAINT_PROGRESS_REPORTED,
        c.EventType.COMPLAINT_RESOLVED,
    }
)
"""The only types :func:`complaint_columns` may find columns in."""


def complaint_columns(typed: Decoded) -> tuple[str, dict[str, Any]] | None:
    """The complaint (its id) and the ``fu_complaints`` columns the event's service-loop facts
    set on its row, an ``UPDATE`` (a row not received yet is not changed); None for an event
    that sets none. Shared by the live write (:func:`record_service_loop_facts`) and the
    rebuild's, which sends them in one statement text with the complaint's other writes
    (``rebuild_target``, #12)."""
    match typed.payload:
        case c.ComplaintReceived() as p:
            return p.complaint_id, {
                "problem": _code(p.problem),
                "product_id": p.product_id,
                "product_category": _code(p.product_category),
                "complex_case": p.complex,
            }
        case c.ComplaintProgressReported(complex=True) as p:
            return p.complaint_id, {"complex_case": True}
        case c.ComplaintResolved(root_cause=RootCause() as root_cause) as p:
            return p.complaint_id, {"root_cause": root_cause.value}
        case _:
            return None


CLOSURE_UPDATE = "UPDATE fu_clients SET account_closure_reason = $2 WHERE client_id = $1"
"""A closure's or reopening's write (D-09): the client's row in place, if it has one (the
rebuild tells it apart by this text, ``rebuild_target``)."""


def closure_reason(typed: Decoded) -> str | None:
    """The ``account_closure_reason`` a closure or reopening sets on its client's row (D-09:
    a closure's reason, a reopening's null)."""
    payload = typed.payload
    return payload.reason.value if isinstance(payload, c.ClientAccountClosed) else None


CLOSURES = frozenset({c.EventType.CLIENT_ACCOUNT_CLOSED, c.EventType.CLIENT_ACCOUNT_REOPENED})
"""The events whose service-loop fact is :data:`CLOSURE_UPDATE`."""


async def record_service_loop_facts(conn: PgConnection, typed: Decoded, rm_id: str | None) -> None:
    """The facts the event adds to the service-loop tables (nothing for other types). Only
    closed codes and ids are stored: the sealed free texts stay in the events."""
    event = typed.envelope
    if event.type not in _RECORDED:
        return
    at = event.occurred_at
    complaint = complaint_columns(typed)
    if complaint is not None:
        complaint_id, columns = complaint
        assignments = ", ".join(f"{n} = ${i}" for i, n in enumerate(columns, start=3))
        await conn.execute(
            f"UPDATE fu_complaints SET {assignments} "  # noqa: S608 - fixed identifiers, bound values
            "WHERE client_id = $1 AND complaint_id = $2",
            event.client_id,
            complaint_id,
            *columns.values(),
        )
        return
    match typed.payload:
        case c.ComplaintCorrectiveActionPlanned() as p:
            await conn.execute(
                """
                INSERT INTO fu_corrective_actions (client_id, complaint_id, action_id, branch_id,
                    root_cause, action_kind, owner_id, planned_at, due_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT DO NOTHING
                """,
                event.client_id,
                p.complaint_id,
                p.action_id,
                event.branch_id,
                p.root_cause.value,
                p.action_kind.value,
                p.owner_id,
                at,
                p.due_at,
            )
        case c.ComplaintCorrectiveActionCompleted() as p:
            await conn.execute(
                "UPDATE fu_corrective_actions SET completed_at = COALESCE(completed_at, $4) "
                "WHERE client_id = $1 AND complaint_id = $2 AND action_id = $3",
                event.client_id,
                p.complaint_id,
                p.action_id,
                at,
            )
        case c.ComplaintPromiseRenegotiated() | c.ConsultationPromiseRenegotiated() as p:
            subject = (
                f"complaint:{p.complaint_id}"
                if isinstance(p, c.ComplaintPromiseRenegotiated)
                else f"consultation:{p.consultation_id}"
            )
            await conn.execute(
                """
                INSERT INTO fu_renegotiations (event_id, client_id, branch_id, rm_id, subject,
                    reason, renegotiated_at, promised_by)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT DO NOTHING
                """,
                event.event_id,
                event.client_id,
                event.branch_id,
                rm_id,
                subject,
                p.reason.value,
                at,
                p.promised_by,
            )
        case c.VisitBusinessHandled() | c.ProductSold() as p:
            sold = p if isinstance(p, c.ProductSold) else None
            await conn.execute(
                """
                INSERT INTO fu_business_events (event_id, client_id, occurred_at, product_risk,
                    amount)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
                """,
                event.event_id,
                event.client_id,
                at,
                _code(sold.product_risk) if sold else None,
                sold.amount if sold else None,
            )
        case c.ClientAccountClosed() | c.ClientAccountReopened():
            await conn.execute(CLOSURE_UPDATE, event.client_id, closure_reason(typed))
        case _:
            pass


def service_loop_row(typed: Decoded, rm_id: str | None) -> ServiceLoopRow | None:
    """What :func:`record_service_loop_facts` writes for the event, as a row of the collected
    writes (:func:`.collected_writes.add_service_loop`, #12: each was a statement of its own
    per event); None where it writes nothing. Not for a closure or a reopening (an ``UPDATE``
    of the client's row, which the collected writes' clients part writes too: the unit keeps
    its reason with the client's facts, :func:`closure_reason`)."""
    event = typed.envelope
    if event.type not in _RECORDED or event.type in CLOSURES:
        return None
    at = event.occurred_at
    complaint = complaint_columns(typed)
    if complaint is not None:
        return COMPLAINT_SET, (event.client_id, complaint[0], complaint[1])
    match typed.payload:
        case c.ComplaintCorrectiveActionPlanned() as p:
            return PLANNED, (
                event.client_id,
                p.complaint_id,
                p.action_id,
                event.branch_id,
                p.root_cause.value,
                p.action_kind.value,
                p.owner_id,
                at,
                p.due_at,
            )
        case c.ComplaintCorrectiveActionCompleted() as p:
            return COMPLETED, (event.client_id, p.complaint_id, p.action_id, at)
        case c.ComplaintPromiseRenegotiated() | c.ConsultationPromiseRenegotiated() as p:
            subject = (
                f"complaint:{p.complaint_id}"
                if isinstance(p, c.ComplaintPromiseRenegotiated)
                else f"consultation:{p.consultation_id}"
            )
            return RENEGOTIATION, (
                event.client_id,
                event.event_id,
                event.branch_id,
                rm_id,
                subject,
                p.reason.value,
                at,
                p.promised_by,
            )
        case c.VisitBusinessHandled() | c.ProductSold() as p:
            sold = p if isinstance(p, c.ProductSold) else None
            return BUSINESS, (
                event.client_id,
                event.event_id,
                at,
                _code(sold.product_risk) if sold else None,
                sold.amount if sold else None,
            )
        case _:
            return None


_T = c.EventType
_RECORDED = frozenset(
    {
        _T.COMPLAINT_RECEIVED,
        _T.COMPLAINT_PROGRESS_REPORTED,
        _T.COMPLAINT_RESOLVED,
        _T.COMPLAINT_CORRECTIVE_ACTION_PLANNED,
        _T.COMPLAINT_CORRECTIVE_ACTION_COMPLETED,
        _T.COMPLAINT_PROMISE_RENEGOTIATED,
        _T.CONSULTATION_PROMISE_RENEGOTIATED,
        _T.VISIT_BUSINESS_HANDLED,
        _T.PRODUCT_SOLD,
        _T.CLIENT_ACCOUNT_CLOSED,
        _T.CLIENT_ACCOUNT_REOPENED,
    }
)
"""The types this module records facts of."""

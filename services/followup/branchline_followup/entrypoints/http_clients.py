"""The client 360 (``GET /v1/clients/{client_id}``) and the D-12 quality measures
(``GET /v1/quality``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from branchline_followup.adapters import queries
from branchline_followup.adapters.page_reads import PostgresPageReads
from branchline_followup.application.queries import QualitySelection, quality, stage_at
from branchline_followup.application.reading import record_client_read
from branchline_followup.application.service_loop import client_service_loop, improvement
from branchline_followup.domain import LifecycleStage, QualityReport
from branchline_followup.domain.improvement import Behaviour, ImprovementReport
from branchline_followup.entrypoints.http_deps import (
    ContextDep,
    StaffDep,
    TaskView,
    client_in_scope,
    submitter_of,
    task_view,
)
from branchline_shared.access.scope import rm_scope_subject
from branchline_shared.events.bounded import Instant
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import Problem

Staff = Annotated[
    Principal, require_roles(Role.RM, Role.SUPERVISOR, Role.ADMIN, Role.BRANCH_SYSTEM)
]
Purpose = Annotated[
    str | None,
    Query(max_length=200, description="Why the client is read; recorded with the read (D-11)."),
]
CLIENT_ROUTE = "GET /v1/clients/{client_id}"
Worker = Annotated[Principal, require_roles(Role.RM, Role.SUPERVISOR, Role.ADMIN)]

DEFAULT_QUALITY_PERIOD = timedelta(days=30)

router = APIRouter(prefix="/v1", tags=["clients", "quality"])


class ComplaintView(BaseModel):
    complaint_id: str
    severity: str
    topic: str | None
    status: str
    owner_id: str | None
    received_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None


class SurveyView(BaseModel):
    """One satisfaction record (D-10), from a survey or a completed follow-up."""

    event_id: uuid.UUID
    visit_id: str | None
    answered_at: datetime
    attitude: float
    professionalism: float
    response_speed: float
    risk_management: float
    convenience: float


class ClientView(BaseModel):
    """A client at a glance (client 360)."""

    client_id: str
    client_type: str
    rm_id: str
    branch_id: str | None
    lifecycle_stage: LifecycleStage
    risk_level: str | None
    risk_tolerance: str | None
    registered_at: datetime
    last_event_at: datetime
    last_contact_at: datetime | None
    open_complaints: list[ComplaintView]
    open_tasks: list[TaskView]
    satisfaction_history: list[SurveyView]
    account_status: str
    """D-09: ``open``, or ``closed`` after ``client.account_closed`` (until a reopening)."""
    account_closed_at: datetime | None
    account_closure_reason: str | None
    behaviour: Behaviour
    """D-09 behaviour class: frequency (high/low) and style (conservative/aggressive)."""


class QualityView(BaseModel):
    branch_id: str | None
    rm_id: str | None
    period_from: datetime
    period_to: datetime
    as_of: datetime
    measures: QualityReport
    improvement: ImprovementReport
    """D-17: complaint analysis by root cause, product and branch; corrective-action
    completion; promises kept, renegotiated and missed."""


@router.get("/clients/{client_id}", response_model=ClientView, summary="A client at a glance")
async def get_client(
    client_id: Annotated[str, Path(min_length=1, max_length=128)],
    ctx: ContextDep,
    principal: Staff,
    staff: StaffDep,
    purpose: Purpose = None,
) -> ClientView:
    """In scope: an RM's own clients, a supervisor's team's, a branch system's clients of its
    branch, every client for an admin; others are 404 like absent ones (existence does not
    leak). The read is recorded (who, which client, why: D-11)."""
    record = await queries.client_record(ctx.pool, client_id)
    if record is None or not client_in_scope(
        principal, staff, rm_id=record.facts.rm_id, branch_id=record.facts.branch_id
    ):
        raise Problem(
            404, "Not found", f"no client {client_id!r} in the read model", kind="client-not-found"
        )
    await record_client_read(
        ctx, submitter_of(principal), client_id=client_id, route=CLIENT_ROUTE, purpose=purpose
    )
    now = await ctx.clock.now()
    policy = ctx.projection.policy
    facts = record.facts
    loop = await client_service_loop(
        PostgresPageReads(ctx.pool), client_id, account_closed_at=facts.account_closed_at, now=now
    )
    return ClientView(
        client_id=facts.client_id,
        client_type=facts.client_type,
        rm_id=facts.rm_id,
        branch_id=facts.branch_id,
        lifecycle_stage=stage_at(facts, now, policy),
        risk_level=facts.risk_level,
        risk_tolerance=facts.risk_tolerance,
        registered_at=facts.registered_at,
        last_event_at=facts.last_event_at,
        last_contact_at=facts.last_contact_at,
        open_complaints=[ComplaintView.model_validate(c) for c in record.open_complaints],
        open_tasks=[task_view(t, now, policy.due_soon_window) for t in record.open_tasks],
        satisfaction_history=[SurveyView.model_validate(s) for s in record.surveys],
        account_status=loop.account_status,
        account_closed_at=facts.account_closed_at if loop.account_status == "closed" else None,
        account_closure_reason=loop.account_closure_reason,
        behaviour=loop.behaviour,
    )


@router.get("/quality", response_model=QualityView, summary="D-12 service quality measures")
async def get_quality(
    ctx: ContextDep,
    principal: Worker,
    staff: StaffDep,
    branch_id: Annotated[str | None, Query(max_length=128)] = None,
    rm_id: Annotated[str | None, Query(max_length=128)] = None,
    period_from: Annotated[Instant | None, Query(alias="from")] = None,
    period_to: Annotated[Instant | None, Query(alias="to")] = None,
) -> QualityView:
    """SLA compliance per rule, waiting and handling times, satisfaction per D-10 dimension,
    complaints by severity, revisit completion, retention and churn, for tasks due, visits,
    surveys and complaints in ``[from, to)`` (default: the last 30 days). An RM sees their
    own measures; a supervisor one RM's of their team, or the aggregates (no ``rm_id``: a
    branch's or the institution's, which name no client); an admin any."""
    if not principal.has(Role.ADMIN):
        if principal.has(Role.SUPERVISOR):
            if rm_id is not None and not staff.in_team(principal.subject, rm_id):
                raise Problem(
                    403,
                    "Forbidden",
                    "a supervisor sees one RM's measures only for an RM of their team",
                    kind="not-your-measures",
                    errors=[{"field": "rm_id", "message": "an RM of your team", "type": "scope"}],
                )
        else:
            own = rm_scope_subject(submitter_of(principal), staff)
            if own is None or (rm_id is not None and rm_id != own):
                raise Problem(
                    403, "Forbidden", "an RM sees only their own measures", kind="not-your-measures"
                )
            rm_id = own
    now = await ctx.clock.now()
    end = period_to or now
    start = period_from or end - DEFAULT_QUALITY_PERIOD
    if start >= end:
        raise Problem(
            422,
            "Invalid request",
            "invalid fields: from",
            kind="validation",
            errors=[{"field": "from", "message": "must be before to", "type": "value_error"}],
        )
    selection = QualitySelection(branch_id=branch_id, rm_id=rm_id, start=start, end=end)
    reads = PostgresPageReads(ctx.pool)
    report = await quality(reads, selection, now=now, policy=ctx.projection.policy)
    loop = await improvement(reads, branch_id=branch_id, rm_id=rm_id, start=start, end=end, now=now)
    return QualityView(
        branch_id=branch_id,
        rm_id=rm_id,
        period_from=start,
        period_to=end,
        as_of=min(now, end),
        measures=report,
        improvement=loop,
    )

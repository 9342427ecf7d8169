"""What followup's routes depend on, read from ``request.app.state`` (so tests and the
composition root decide), and the views they answer with."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from branchline_followup.adapters.read_models import TASK_COLUMNS
from branchline_followup.application.recording import FollowupContext
from branchline_followup.domain import FollowupTask, SlaState, sla_state
from branchline_shared.access.scope import StaffDirectory, rm_scope_subject, sees_client
from branchline_shared.events.envelope import Actor, Submitter
from branchline_shared.http.auth import Principal, Role
from branchline_shared.postgres.pool import PgPool


async def get_context(request: Request) -> FollowupContext:
    ctx: FollowupContext = request.app.state.followup
    return ctx


async def get_pool(request: Request) -> PgPool:
    pool: PgPool = request.app.state.pool
    return pool


ContextDep = Annotated[FollowupContext, Depends(get_context)]
PoolDep = Annotated[PgPool, Depends(get_pool)]


async def get_staff(request: Request) -> StaffDirectory:
    staff: StaffDirectory = request.app.state.staff
    return staff


StaffDep = Annotated[StaffDirectory, Depends(get_staff)]


OVERSEERS = frozenset({Role.SUPERVISOR, Role.ADMIN})


def oversees(principal: Principal) -> bool:
    """Supervisors (their team) and admins (everyone) act on others' tasks; an RM on their own."""
    return principal.has_any(OVERSEERS)


def staff_of(request: Request) -> StaffDirectory:
    staff: StaffDirectory = request.app.state.staff
    return staff


def task_scope_filter(
    principal: Principal, staff: StaffDirectory
) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """The assignees ``principal`` may see: (only these, or none of these), for
    ``queries.TaskFilter(assignee_in=..., assignee_not_in=...)``."""
    if principal.has(Role.ADMIN):
        return None, None
    if principal.has(Role.SUPERVISOR):
        members, outside = staff.team_filter(principal.subject)
        return (members, None) if members else (None, outside)
    own = rm_scope_subject(submitter_of(principal), staff)
    return frozenset({own} if own else ()), None


def may_grade(principal: Principal, assignee: str) -> bool:
    """Satisfaction scores feed the assignee's measures (D-10, D-12): whoever the task is
    assigned to cannot record them; a supervisor or admin who called the client may."""
    return principal.subject != assignee and oversees(principal)


def submitter_of(principal: Principal) -> Submitter:
    return Submitter.model_validate(principal.submitter())


def task_in_scope(principal: Principal, staff: StaffDirectory, assignee: str) -> bool:
    """Admins see and act on every task, a supervisor on their team's (their RMs' and their
    own), an RM on their own (a subject bound to the supervisor role: none)."""
    if principal.has(Role.ADMIN):
        return True
    if principal.has(Role.SUPERVISOR) and staff.in_team(principal.subject, assignee):
        return True
    return rm_scope_subject(submitter_of(principal), staff) == assignee


def client_in_scope(
    principal: Principal, staff: StaffDirectory, *, rm_id: str, branch_id: str | None
) -> bool:
    return sees_client(submitter_of(principal), staff, rm_id=rm_id, branch_ids=[branch_id])


def actor_of(principal: Principal) -> Actor:
    for role in (Role.ADMIN, Role.SUPERVISOR, Role.RM):
        if role in principal.roles:
            return Actor(id=principal.subject, role=role.value)
    return Actor(id=principal.subject, role="staff")


class TaskView(BaseModel):
    """A follow-up task (docs/api.md): every task says which rule made it due and why."""

    id: uuid.UUID
    kind: str
    rule: str
    client_id: str
    branch_id: str | None
    assignee: str
    subject: str
    opened_at: datetime
    due_at: datetime
    sla_state: SlaState
    status: str
    profile: str
    source_event_id: uuid.UUID
    closed_at: datetime | None
    close_reason: str | None
    escalated_to: str | None
    overdue_at: datetime | None
    outcome: str | None


def task_view(row: dict[str, Any], now: datetime, due_soon_window: timedelta) -> TaskView:
    task = FollowupTask.model_validate(
        {k: row[k] for k in TASK_COLUMNS if k != "closed_by_event_id"}
    )
    return TaskView(
        id=task.id,
        kind=task.kind.value,
        rule=task.rule.value,
        client_id=task.client_id,
        branch_id=task.branch_id,
        assignee=task.assignee,
        subject=task.subject,
        opened_at=task.opened_at,
        due_at=task.due_at,
        sla_state=sla_state(task, now, due_soon_window),
        status=task.status.value,
        profile=task.deadline_profile,
        source_event_id=task.source_event_id,
        closed_at=task.closed_at,
        close_reason=task.close_reason,
        escalated_to=task.escalated_to,
        overdue_at=row["overdue_at"],
        outcome=row["outcome"],
    )

"""The RM's work list and actions: ``GET /v1/followups``, ``POST /v1/followups/{id}/complete``,
``POST /v1/followups/{id}/reassign``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from branchline_followup.adapters import queries
from branchline_followup.application.actions import (
    TaskRefused,
    complete_task,
    reassign_task,
)
from branchline_followup.domain import TaskKind
from branchline_followup.entrypoints import task_cursor
from branchline_followup.entrypoints.http_deps import (
    ContextDep,
    StaffDep,
    TaskView,
    actor_of,
    may_grade,
    submitter_of,
    task_in_scope,
    task_scope_filter,
    task_view,
)
from branchline_followup.entrypoints.problems import problem_of
from branchline_followup.entrypoints.task_cursor import encode_cursor
from branchline_shared.crypto.keystore import KeyDestroyed
from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue import FollowupOutcome, Label, Note, SatisfactionScores
from branchline_shared.events.envelope import Identifier
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import Problem

Worker = Annotated[Principal, require_roles(Role.RM, Role.SUPERVISOR, Role.ADMIN)]
Overseer = Annotated[Principal, require_roles(Role.SUPERVISOR, Role.ADMIN)]
TaskId = Annotated[uuid.UUID, Path(description="The task's id")]
RequestKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:@\-]+$",
        description=(
            "The caller's key for this request (optional): a completion refused by a rule "
            "(D-15) and sent again with the same key is refused again, recorded once."
        ),
    ),
]

STATUS_VALUES = sorted(queries.STATUS_FILTERS | queries.SLA_FILTERS)

router = APIRouter(prefix="/v1/followups", tags=["followups"])


class TaskPage(BaseModel):
    items: list[TaskView]
    next_cursor: str | None = Field(
        description="The next page's cursor; null at the end. A page may hold fewer items "
        "than `limit`, or none, and still have a cursor: a page reads at most 4 x (`limit` + 1) "
        "stored tasks, and rows it cannot read are skipped (#12). Go on until it is null."
    )


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: FollowupOutcome
    note: Note | None = None
    next_contact_at: Instant | None = None
    scores: SatisfactionScores | None = None
    client_warned: StrictBool | None = Field(
        default=None,
        description="D-15: the client was warned (风险提示) that a holding no longer fits.",
    )


class ReassignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: Identifier
    reason: Label | None = None


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "Invalid request",
        f"invalid fields: {field}",
        kind="validation",
        errors=[{"field": field, "message": message, "type": "value_error"}],
    )


def decode_cursor(cursor: str) -> tuple[datetime | str, uuid.UUID]:
    try:
        return task_cursor.decode_cursor(cursor)
    except task_cursor.CursorInvalid:
        raise _invalid("cursor", "not a cursor this API returned") from None


@router.get("", response_model=TaskPage, summary="Follow-up tasks, ordered by deadline")
async def list_followups(
    ctx: ContextDep,
    principal: Worker,
    staff: StaffDep,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[str | None, Query(description=f"One of {STATUS_VALUES}")] = None,
    kind: Annotated[str | None, Query(description="A task kind")] = None,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    due_before: Annotated[Instant | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TaskPage:
    """An RM sees their own tasks, a supervisor their team's (their RMs' and their own), an
    admin everyone's; ``assignee`` narrows within that scope (outside it the page is empty).
    ``status`` is a task status (open, done, cancelled) or an open task's SLA state (overdue,
    due_soon, on_track). A page that finds no task it can show reads at most 4 x (``limit``
    + 1) stored tasks (fewer than 5 x when it finds some): past rows it cannot read (skipped)
    it may hold fewer tasks than ``limit``, or none, with a ``next_cursor`` that goes on
    after them; only a null ``next_cursor`` ends the list."""
    if status is not None and status not in STATUS_VALUES:
        raise _invalid("status", f"must be one of {STATUS_VALUES}")
    if kind is not None and kind not in {k.value for k in TaskKind}:
        raise _invalid("kind", f"must be one of {sorted(k.value for k in TaskKind)}")
    only, never = task_scope_filter(principal, staff)
    after = decode_cursor(cursor) if cursor else None
    now = await ctx.clock.now()
    window = ctx.projection.policy.due_soon_window
    found = await queries.list_tasks(
        ctx.pool,
        where=queries.TaskFilter(
            assignee=assignee,
            status=status,
            kind=kind,
            client_id=client_id,
            due_before=due_before,
            assignee_in=only,
            assignee_not_in=never,
        ),
        after=after,
        limit=limit + 1,
        now=now,
        due_soon_window=window,
    )
    rows = found.rows
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(page[-1]["due_at"], page[-1]["id"])
    elif found.resume_after is not None:
        # the read stopped past rows it skipped as unreadable: a short (or empty) page, and
        # the next one starts after them (#12)
        next_cursor = encode_cursor(*found.resume_after)
    return TaskPage(items=[task_view(r, now, window) for r in page], next_cursor=next_cursor)


@router.post("/{task_id}/complete", response_model=TaskView, summary="Record the outcome of a task")
async def complete(
    task_id: TaskId,
    body: CompleteRequest,
    ctx: ContextDep,
    principal: Worker,
    staff: StaffDep,
    idempotency_key: RequestKey = None,
) -> TaskView:
    """Appends ``followup.completed`` (audited); the task is done. An RM completes only their
    own tasks, a supervisor their team's (others: 404); a closed task is refused (409),
    except for the same completion sent again by the same caller (as recorded), which is
    answered 200 with the task as it is and records nothing.
    ``scores`` (D-10) are the client's: refused from an RM completing their own task (403,
    they would grade themselves). Nothing changes on a refusal, but a D-15 refusal (the
    client not warned) is recorded: once per ``Idempotency-Key`` when the caller sends one
    (the same request sent again is refused again, not recorded again)."""
    try:
        await complete_task(
            ctx,
            task_id,
            actor=actor_of(principal),
            may_act=lambda assignee: task_in_scope(principal, staff, assignee),
            may_grade=lambda assignee: may_grade(principal, assignee),
            outcome=body.outcome,
            note=body.note,
            next_contact_at=body.next_contact_at,
            scores=body.scores,
            client_warned=body.client_warned,
            submitted_by=submitter_of(principal),
            request_key=idempotency_key,
        )
    except (TaskRefused, KeyDestroyed) as exc:
        raise problem_of(exc) from None
    return await _view(ctx, task_id)


@router.post("/{task_id}/reassign", response_model=TaskView, summary="Give a task to someone else")
async def reassign(
    task_id: TaskId, body: ReassignRequest, ctx: ContextDep, principal: Overseer, staff: StaffDep
) -> TaskView:
    """Supervisors (within their team, to a member of it) and admins; appends
    ``followup.reassigned`` (audited). A task outside the team is 404."""
    if not task_in_scope(principal, staff, body.assignee):
        raise _invalid("assignee", "not a member of your team")
    try:
        await reassign_task(
            ctx,
            task_id,
            actor=actor_of(principal),
            assignee=body.assignee,
            reason=body.reason,
            may_act=lambda assignee: task_in_scope(principal, staff, assignee),
            submitted_by=submitter_of(principal),
        )
    except TaskRefused as exc:
        raise problem_of(exc) from None
    return await _view(ctx, task_id)


async def _view(ctx: ContextDep, task_id: uuid.UUID) -> TaskView:
    row = await queries.fetch_task_view(ctx.pool, task_id)
    if row is None:
        raise Problem(404, "Not found", f"no follow-up task {task_id}", kind="task-not-found")
    return task_view(row, await ctx.clock.now(), ctx.projection.policy.due_soon_window)

"""SQL of the followup read models, read side: the work list, the client 360, the records of
the quality measures. Keyword-only arguments, no HTTP concerns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from branchline_followup.adapters.read_models import FACT_COLUMNS, ClientFacts, fetch_client
from branchline_shared.postgres.pool import PgPool

TASK_VIEW_COLUMNS = (
    "id, kind, rule, client_id, branch_id, assignee, subject, opened_at, due_at, "
    "deadline_profile, source_event_id, status, closed_at, close_reason, escalated_to, "
    "overdue_at, outcome"
)

SLA_FILTERS = frozenset({"overdue", "due_soon", "on_track"})
STATUS_FILTERS = frozenset({"open", "done", "cancelled"})


@dataclass(frozen=True)
class TaskFilter:
    assignee: str | None = None
    status: str | None = None
    """A task status (open, done, cancelled) or an open task's sla_state (overdue, due_soon,
    on_track)."""
    kind: str | None = None
    client_id: str | None = None
    due_before: datetime | None = None
    assignee_in: frozenset[str] | None = None
    """Scope: only tasks of these assignees (a supervisor's team)."""
    assignee_not_in: frozenset[str] | None = None
    """Scope: no task of these assignees (the default supervisor's team is everyone else)."""


async def list_tasks(
    pool: PgPool,
    *,
    where: TaskFilter,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    now: datetime,
    due_soon_window: timedelta,
) -> list[dict[str, Any]]:
    """Tasks ordered by (due_at, id), the page after the keyset ``after``."""
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if where.assignee is not None:
        clauses.append(f"assignee = {param(where.assignee)}")
    if where.assignee_in is not None:
        clauses.append(f"assignee = ANY({param(sorted(where.assignee_in))}::text[])")
    if where.assignee_not_in:
        clauses.append(f"assignee <> ALL({param(sorted(where.assignee_not_in))}::text[])")
    if where.kind is not None:
        clauses.append(f"kind = {param(where.kind)}")
    if where.client_id is not None:
        clauses.append(f"client_id = {param(where.client_id)}")
    if where.due_before is not None:
        clauses.append(f"due_at < {param(where.due_before)}")
    if where.status in STATUS_FILTERS:
        clauses.append(f"status = {param(where.status)}")
    elif where.status in SLA_FILTERS:
        clauses.append("status = 'open'")
        soon = now + due_soon_window
        if where.status == "overdue":
            clauses.append(f"due_at <= {param(now)}")
        elif where.status == "due_soon":
            clauses.append(f"due_at > {param(now)} AND due_at <= {param(soon)}")
        else:
            clauses.append(f"due_at > {param(soon)}")
    if after is not None:
        clauses.append(f"(due_at, id) > ({param(after[0])}, {param(after[1])})")
    sql = f"SELECT {TASK_VIEW_COLUMNS} FROM fu_tasks"  # noqa: S608 - fixed identifiers, bound values
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY due_at, id LIMIT {param(limit)}"
    return [dict(r) for r in await pool.fetch(sql, *params)]


async def fetch_task_view(pool: PgPool, task_id: uuid.UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {TASK_VIEW_COLUMNS} FROM fu_tasks WHERE id = $1", task_id)  # noqa: S608 - fixed identifiers, bound values
    return None if row is None else dict(row)


@dataclass(frozen=True)
class ClientRecord:
    facts: ClientFacts
    open_tasks: list[dict[str, Any]]
    open_complaints: list[dict[str, Any]]
    surveys: list[dict[str, Any]]


async def client_record(pool: PgPool, client_id: str) -> ClientRecord | None:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        facts = await fetch_client(conn, client_id)
        if facts is None:
            return None
        tasks = await conn.fetch(
            f"SELECT {TASK_VIEW_COLUMNS} FROM fu_tasks WHERE client_id = $1 AND status = 'open' "  # noqa: S608 - fixed identifiers, bound values
            "ORDER BY due_at, id",
            client_id,
        )
        complaints = await conn.fetch(
            "SELECT complaint_id, severity, topic, status, owner_id, received_at, "
            "acknowledged_at, resolved_at FROM fu_complaints "
            "WHERE client_id = $1 AND status <> 'closed' ORDER BY received_at, complaint_id",
            client_id,
        )
        surveys = await conn.fetch(
            "SELECT event_id, visit_id, answered_at, attitude, professionalism, response_speed, "
            "risk_management, convenience FROM fu_surveys WHERE client_id = $1 "
            "ORDER BY answered_at, event_id",
            client_id,
        )
    return ClientRecord(
        facts=facts,
        open_tasks=[dict(r) for r in tasks],
        open_complaints=[dict(r) for r in complaints],
        surveys=[dict(r) for r in surveys],
    )


@dataclass(frozen=True)
class QualityRecords:
    tasks: list[dict[str, Any]]
    visits: list[dict[str, Any]]
    surveys: list[dict[str, Any]]
    complaints: list[dict[str, Any]]
    clients: list[ClientFacts]
    staff: list[str]
    """D-14: the staff of the selection (the RM; else the RMs of its clients and the staff
    whose events named its branch, or every member of staff followup heard of)."""
    training: list[dict[str, Any]]


async def quality_records(
    pool: PgPool,
    *,
    branch_id: str | None,
    rm_id: str | None,
    start: datetime,
    end: datetime,
) -> QualityRecords:
    """The rows the D-12 measures are computed from, for one branch / RM / period
    ``[start, end)``: tasks due, visits arrived, surveys answered and complaints received in
    the period; the clients of the branch / RM (retention)."""

    def scoped(owner_column: str, extra: list[Any]) -> tuple[str, list[Any]]:
        clauses, params = [], list(extra)
        if branch_id is not None:
            params.append(branch_id)
            clauses.append(f"branch_id = ${len(params)}")
        if rm_id is not None:
            params.append(rm_id)
            clauses.append(f"{owner_column} = ${len(params)}")
        return "".join(f" AND {c}" for c in clauses), params

    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        where, params = scoped("assignee", [start, end])
        tasks = await conn.fetch(
            "SELECT rule, kind, due_at, status, closed_at FROM fu_tasks "  # noqa: S608 - fixed identifiers, bound values
            f"WHERE due_at >= $1 AND due_at < $2{where}",
            *params,
        )
        where, params = scoped("rm_id", [start, end])
        visits = await conn.fetch(
            "SELECT arrived_at, started_at, ended_at FROM fu_visits "  # noqa: S608 - fixed identifiers, bound values
            f"WHERE COALESCE(arrived_at, started_at) >= $1 "
            f"AND COALESCE(arrived_at, started_at) < $2{where}",
            *params,
        )
        surveys = await conn.fetch(
            "SELECT attitude, professionalism, response_speed, risk_management, convenience "  # noqa: S608 - fixed identifiers, bound values
            f"FROM fu_surveys WHERE answered_at >= $1 AND answered_at < $2{where}",
            *params,
        )
        complaints = await conn.fetch(
            "SELECT client_id, complaint_id, severity FROM fu_complaints "  # noqa: S608 - fixed identifiers, bound values
            f"WHERE received_at >= $1 AND received_at < $2{where}",
            *params,
        )
        where, params = scoped("rm_id", [])
        client_rows = await conn.fetch(
            f"SELECT client_id, {', '.join(FACT_COLUMNS)} FROM fu_clients "  # noqa: S608 - fixed identifiers, bound values
            f"WHERE true{where} ORDER BY client_id",
            *params,
        )
        staff = {rm_id} if rm_id is not None else {str(r["rm_id"]) for r in client_rows}
        if rm_id is None:
            staff_rows = await conn.fetch(
                "SELECT staff_id FROM fu_staff WHERE $1::text IS NULL OR branch_id = $1",
                branch_id,
            )
            staff |= {str(r["staff_id"]) for r in staff_rows}
        training = await conn.fetch(
            "SELECT staff_id, hours, completed_at FROM fu_staff_training "
            "WHERE staff_id = ANY($1::text[]) AND completed_at >= $2 AND completed_at < $3",
            sorted(staff),
            start,
            end,
        )
    return QualityRecords(
        staff=sorted(staff),
        training=[dict(r) for r in training],
        tasks=[dict(r) for r in tasks],
        visits=[dict(r) for r in visits],
        surveys=[dict(r) for r in surveys],
        complaints=[dict(r) for r in complaints],
        clients=[ClientFacts(**dict(r)) for r in client_rows],
    )

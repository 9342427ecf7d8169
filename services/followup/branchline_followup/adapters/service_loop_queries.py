"""SQL of the service-loop reads (D-09, D-17): the complaint analysis and statistics records,
corrective actions, renegotiations and a client's business events. Keyword-only arguments, no
HTTP concerns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from branchline_shared.postgres.pool import PgPool
from branchline_shared.postgres.row_guard import readable, select_list

# Instants read through the row guard (issue 9: one bad row never fails the whole answer).
_ACTION_SELECT = select_list(
    ["root_cause", "due_at", "completed_at"], instants={"due_at", "completed_at"}
)
_TASK_SELECT = select_list(
    ["rule", "kind", "due_at", "status", "closed_at"], instants={"due_at", "closed_at"}
)
_BUSINESS_SELECT = select_list(["occurred_at", "product_risk", "amount"], instants={"occurred_at"})


@dataclass(frozen=True)
class ImprovementRecords:
    complaints: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    promise_tasks: list[dict[str, Any]]
    renegotiations: int


def _scope(branch_id: str | None, rm_id: str | None, owner_column: str, params: list[Any]) -> str:
    clauses = []
    if branch_id is not None:
        params.append(branch_id)
        clauses.append(f"branch_id = ${len(params)}")
    if rm_id is not None:
        params.append(rm_id)
        clauses.append(f"{owner_column} = ${len(params)}")
    return "".join(f" AND {c}" for c in clauses)


async def improvement_records(
    pool: PgPool,
    *,
    branch_id: str | None,
    rm_id: str | None,
    start: datetime,
    end: datetime,
) -> ImprovementRecords:
    """Complaints received, corrective actions planned, promise tasks due and renegotiations
    made in ``[start, end)``, for one branch / RM (an RM: their clients' complaints, the actions
    they own, their promises)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        params: list[Any] = [start, end]
        where = _scope(branch_id, rm_id, "rm_id", params)
        complaints = await conn.fetch(
            "SELECT branch_id, root_cause, product_id, product_category FROM fu_complaints "  # noqa: S608 - fixed identifiers, bound values
            f"WHERE received_at >= $1 AND received_at < $2{where}",
            *params,
        )
        params = [start, end]
        where = _scope(branch_id, rm_id, "owner_id", params)
        actions = await conn.fetch(
            f"SELECT {_ACTION_SELECT} FROM fu_corrective_actions "  # noqa: S608 - fixed identifiers, bound values
            f"WHERE planned_at >= $1 AND planned_at < $2{where}",
            *params,
        )
        params = [start, end]
        where = _scope(branch_id, rm_id, "assignee", params)
        tasks = await conn.fetch(
            f"SELECT {_TASK_SELECT} FROM fu_tasks "  # noqa: S608 - fixed identifiers, bound values
            "WHERE kind IN ('consultation_promise', 'complaint_progress_promise') "
            f"AND due_at >= $1 AND due_at < $2{where}",
            *params,
        )
        params = [start, end]
        where = _scope(branch_id, rm_id, "rm_id", params)
        renegotiations = await conn.fetchval(
            "SELECT count(*) FROM fu_renegotiations "  # noqa: S608 - fixed identifiers, bound values
            f"WHERE renegotiated_at >= $1 AND renegotiated_at < $2{where}",
            *params,
        )
    return ImprovementRecords(
        complaints=[dict(r) for r in complaints],
        actions=readable(actions, query="improvement.actions"),
        promise_tasks=readable(tasks, query="improvement.promises"),
        renegotiations=int(renegotiations),
    )


async def statistics_records(
    pool: PgPool, *, branch_ids: list[str] | None, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Complaints received in ``[start, end)`` (of ``branch_ids`` when given; ``None``: all)."""
    sql = (
        "SELECT branch_id, received_at, problem, product_category, complex_case, resolved_at "
        "FROM fu_complaints WHERE received_at >= $1 AND received_at < $2"
    )
    params: list[Any] = [start, end]
    if branch_ids is not None:
        params.append(branch_ids)
        sql += " AND branch_id = ANY($3::text[])"
    return [dict(r) for r in await pool.fetch(sql + " ORDER BY received_at", *params)]


async def client_service_loop(pool: PgPool, client_id: str) -> dict[str, Any]:
    """The client's account status and business events (D-09 behaviour)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        reason = await conn.fetchval(
            "SELECT account_closure_reason FROM fu_clients WHERE client_id = $1", client_id
        )
        business = await conn.fetch(
            f"SELECT {_BUSINESS_SELECT} FROM fu_business_events "  # noqa: S608 - fixed identifiers, bound values
            "WHERE client_id = $1 ORDER BY fu_business_events.occurred_at",
            client_id,
        )
    return {
        "account_closure_reason": reason,
        "business": readable(business, query="client360.business"),
    }

"""SQL of the console's views that the JSON API does not have: the supervisor's team board
(open, due soon, overdue and escalated tasks per assignee)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from branchline_shared.postgres.pool import PgPool


@dataclass(frozen=True)
class BoardRow:
    assignee: str
    open: int
    due_soon: int
    overdue: int
    escalated: int
    done_since: int
    """Tasks closed as done since the board's ``done_since`` instant."""


async def team_board(
    pool: PgPool, *, now: datetime, due_soon_until: datetime, done_since: datetime
) -> list[BoardRow]:
    rows = await pool.fetch(
        "SELECT assignee, "
        "count(*) FILTER (WHERE status = 'open') AS open, "
        "count(*) FILTER (WHERE status = 'open' AND due_at > $1 AND due_at <= $2) AS due_soon, "
        "count(*) FILTER (WHERE status = 'open' AND due_at <= $1) AS overdue, "
        "count(*) FILTER (WHERE status = 'open' AND escalated_to IS NOT NULL) AS escalated, "
        "count(*) FILTER (WHERE status = 'done' AND closed_at >= $3) AS done_since "
        "FROM fu_tasks WHERE status = 'open' OR closed_at >= $3 "
        "GROUP BY assignee ORDER BY assignee",
        now,
        due_soon_until,
        done_since,
    )
    return [BoardRow(**dict(r)) for r in rows]

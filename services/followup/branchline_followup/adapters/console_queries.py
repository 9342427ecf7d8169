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


TEAM_BOARD = """
SELECT assignee,
       count(*) FILTER (WHERE status = 'open') AS open,
       count(*) FILTER (WHERE status = 'open' AND due_at > $1 AND due_at <= $2) AS due_soon,
       count(*) FILTER (WHERE status = 'open' AND due_at <= $1) AS overdue,
       count(*) FILTER (WHERE status = 'open' AND escalated_to IS NOT NULL) AS escalated,
       count(*) FILTER (WHERE status = 'done' AND closed_at >= $3) AS done_since
FROM (
    SELECT assignee, status, due_at, escalated_to, closed_at FROM fu_tasks
    WHERE status = 'open'
    UNION ALL
    SELECT assignee, status, due_at, escalated_to, closed_at FROM fu_tasks
    WHERE status <> 'open' AND closed_at >= $3 AND closed_at <= 'infinity'
) AS board
GROUP BY assignee ORDER BY assignee
"""
"""The open tasks and those closed since ``$3``: two disjoint parts (status is NOT NULL), each
read by its partial index (followup migration 014), where ``status = 'open' OR closed_at >=
$3`` read every task ever made on any plan (#12). A task closed otherwise than done still
puts its assignee on the board, with nothing counted, as before.

``closed_at <= 'infinity'`` holds for every closing instant (none is later): it is there for
the generic plan, which guesses an open-ended range ``closed_at >= $3`` at a third of the
closed tasks (ever more as they pile up: a parallel plan at 100,000 tasks) and a range with
both ends at 0.5 % of them, nearer a day's closings (#12)."""


async def team_board(
    pool: PgPool, *, now: datetime, due_soon_until: datetime, done_since: datetime
) -> list[BoardRow]:
    rows = await pool.fetch(TEAM_BOARD, now, due_soon_until, done_since)
    return [BoardRow(**dict(r)) for r in rows]

"""The read model of the supervisor's refusals page: the ``rule.violation_refused`` events of
intake's topic (the rule, when, where, by whom), without personal values. Written by the
projector in the transaction that applies each event (a redelivery changes nothing, a rebuild
makes it again); read by the console, scoped to the caller's team by the client's RM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from branchline_shared.events.catalogue import EventType, RuleViolationRefused
from branchline_shared.events.typed import Decoded, payload_as
from branchline_shared.postgres.pool import PgConnection, PgPool
from branchline_shared.postgres.statements import Placeholders

REFUSED = EventType.RULE_VIOLATION_REFUSED.value
PAGE_LIMIT = 200


async def record_refusal(conn: PgConnection, typed: Decoded) -> None:
    """Within the projector's transaction, after the event was marked applied. The rule's
    ``detail`` is not kept: it may quote what was sent; the title is the rule's own text.
    ``rm_id`` is not sent: console migration 004's trigger sets it to the client's RM (and
    the client's writes keep it so), in this transaction."""
    event = typed.envelope
    if event.type != REFUSED:
        return
    payload = payload_as(typed, RuleViolationRefused)
    refused = payload.refused_event
    await conn.execute(
        "INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, branch_id, "
        "client_id, refused_type, actor_id, actor_role, submitter) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        event.event_id,
        str(payload.rule),
        str(payload.title),
        refused.occurred_at,
        event.recorded_at,
        refused.branch_id,
        refused.client_id,
        refused.type,
        refused.actor.id,
        refused.actor.role,
        payload.submitted_by.id,
    )


RULES = """
WITH RECURSIVE rules AS (
    (SELECT rule FROM fu_refusals ORDER BY rule LIMIT 1)
    UNION ALL
    SELECT (SELECT f.rule FROM fu_refusals f WHERE f.rule > r.rule ORDER BY f.rule LIMIT 1)
    FROM rules r WHERE r.rule IS NOT NULL
)
SELECT rule FROM rules WHERE rule IS NOT NULL
"""
"""Every rule that refused something, in order: ``SELECT DISTINCT rule ... ORDER BY rule``
read as one index probe per rule (``fu_refusals_by_rule``, console migration 003), where the
DISTINCT read every refusal ever recorded (#12). ``rule`` is NOT NULL and compared in the
column's (deterministic) collation, so the walk meets each distinct rule once, in the same
order."""


@dataclass(frozen=True)
class RefusalSelection:
    rule: str | None = None
    branch_id: str | None = None
    rm_in: frozenset[str] | None = None
    """Only refusals about clients of these RMs (None: no such bound). A refusal about no
    client or an unknown one has no RM: never in a team's page, ``any_client`` or not."""
    rm_not_in: frozenset[str] | None = None
    """None of the clients of these RMs (a default supervisor's team is everyone else)."""
    any_client: bool = False
    """Also refusals about no client or a client followup does not know (admins)."""


_COLUMNS = (
    "r.event_id, r.rule, r.title, r.occurred_at, r.recorded_at, r.branch_id, r.client_id, "
    "r.refused_type, r.actor_id, r.actor_role, r.submitter, r.rm_id"
)
_NEWEST_FIRST = "ORDER BY occurred_at DESC, event_id DESC"


def refusals_statement(selection: RefusalSelection) -> tuple[str, list[Any]]:
    """The page's SQL with only the selection's conditions (#12): as ``($1 IS NULL OR rule =
    $1)`` and the like, a generic plan could not tell a condition that is off from one that is
    on, and a rule's page walked every refusal newest first, filtering. A rule's page reads
    its rule's entries of ``fu_refusals_by_rule`` (console migration 003), newest first.

    The RM is the refusal row's ``rm_id``: its client's current RM, kept by console migration
    004's triggers (NULL: no client, or one followup does not know). A team's page
    (``rm_in``) is each member's page, by ``fu_refusals_by_rm`` or, under a rule,
    ``fu_refusals_by_rm_rule``, merged: at most a page per member is read, where a walk of
    every refusal newest first, joined to its client, read 19,142 pages at 100,000 refusals
    for a one-RM team."""
    clauses: list[str] = []
    param = Placeholders()
    params = param.values

    if selection.rule is not None:
        clauses.append(f"r.rule = {param(selection.rule)}")
    if selection.branch_id is not None:
        clauses.append(f"r.branch_id = {param(selection.branch_id)}")
    if selection.rm_not_in is not None:
        clauses.append(f"NOT (r.rm_id = ANY({param(sorted(selection.rm_not_in))}::text[]))")
    if selection.rm_in is None and not selection.any_client:
        clauses.append("r.rm_id IS NOT NULL")
    if selection.rm_in is None:
        sql = (
            f"SELECT {_COLUMNS} FROM fu_refusals r "  # noqa: S608 - fixed conditions, bound values
            f"WHERE {' AND '.join(clauses) or 'true'} "
            f"ORDER BY r.occurred_at DESC, r.event_id DESC LIMIT {param(PAGE_LIMIT)}"
        )
        return sql, params
    team = param(sorted(selection.rm_in))
    limit = param(PAGE_LIMIT)
    clauses.append("r.rm_id = team.member")
    sql = (
        f"SELECT page.* FROM unnest({team}::text[]) AS team(member) "  # noqa: S608 - fixed conditions, bound values
        f"CROSS JOIN LATERAL (SELECT {_COLUMNS} FROM fu_refusals r "
        f"WHERE {' AND '.join(clauses)} "
        f"ORDER BY r.occurred_at DESC, r.event_id DESC LIMIT {limit}) AS page "
        f"{_NEWEST_FIRST} LIMIT {limit}"
    )
    return sql, params


@dataclass(frozen=True)
class RefusalPage:
    rows: list[dict[str, Any]]
    rules: list[str]
    """Every rule that refused something (the filter's choices; rule ids are not personal)."""


async def refusals(pool: PgPool, selection: RefusalSelection) -> RefusalPage:
    """Newest first (by the refused event's instant), at most ``PAGE_LIMIT``."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        sql, params = refusals_statement(selection)
        rows = await conn.fetch(sql, *params)
        rules = await conn.fetch(RULES)
    return RefusalPage(rows=[dict(r) for r in rows], rules=[r["rule"] for r in rules])

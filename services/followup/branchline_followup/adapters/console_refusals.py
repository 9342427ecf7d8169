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
_REFUSAL = (
    "r.event_id, r.rule, r.title, r.occurred_at, r.recorded_at, r.branch_id, r.client_id, "
    "r.refused_type, r.actor_id, r.actor_role, r.submitter"
)


async def record_refusal(conn: PgConnection, typed: Decoded) -> None:
    """Within the projector's transaction, after the event was marked applied. The rule's
    ``detail`` is not kept: it may quote what was sent; the title is the rule's own text."""
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
    """Only refusals about clients of these RMs (None: no such bound)."""
    rm_not_in: frozenset[str] | None = None
    """None of the clients of these RMs (a default supervisor's team is everyone else)."""
    any_client: bool = False
    """Also refusals about no client or a client followup does not know (admins)."""


def refusals_statement(selection: RefusalSelection) -> tuple[str, list[Any]]:
    """The page's SQL with only the selection's conditions (#12): as ``($1 IS NULL OR rule =
    $1)`` and the like, a generic plan could not tell a condition that is off from one that is
    on, and a rule's page walked every refusal newest first, filtering. A rule's page reads
    its rule's entries of ``fu_refusals_by_rule`` (console migration 003), newest first.

    A named team's page (``rm_in``) is read from the team's clients, member by member
    (``fu_clients_by_rm``; ``OFFSET 0`` keeps the member's clients a lateral read, which a
    generic plan would otherwise join to every client by a sequential scan), then each
    client's refusals newest first (``fu_refusals_of_client``, console migration 004),
    merged: it reads the team's refusals, at most a page per client, where the walk of every
    refusal (of the rule) newest first, joined to its client to test the RM, read the whole
    table when the team's refusals were rare (#12). The RM is the client's as read now, as
    before: a refusal shows to its client's current RM's team, a client reassigned takes its
    refusals with it, and nothing about the RM is kept on the refusal row. Everyone else's
    pages (the default supervisor's ``rm_not_in``, an admin's) still walk the refusals
    newest first: their scope is most of the clients."""
    param = Placeholders()
    params = param.values
    clauses: list[str] = []
    if selection.rule is not None:
        clauses.append(f"r.rule = {param(selection.rule)}")
    if selection.branch_id is not None:
        clauses.append(f"r.branch_id = {param(selection.branch_id)}")
    order = "ORDER BY r.occurred_at DESC, r.event_id DESC"
    if selection.rm_in is not None:
        team = param(sorted(selection.rm_in))
        outside = ""
        if selection.rm_not_in is not None:  # both given (no caller does): neither is dropped
            outside = f"WHERE NOT (c.rm_id = ANY({param(sorted(selection.rm_not_in))}::text[])) "
        of_client = " AND ".join(["r.client_id = c.client_id", *clauses])
        limit = param(PAGE_LIMIT)
        sql = (
            f"SELECT r.*, c.rm_id FROM unnest({team}::text[]) AS team(member) "  # noqa: S608 - fixed conditions, bound values
            "CROSS JOIN LATERAL (SELECT c.client_id, c.rm_id FROM fu_clients c "
            "WHERE c.rm_id = team.member OFFSET 0) AS c "
            f"CROSS JOIN LATERAL (SELECT {_REFUSAL} FROM fu_refusals r WHERE {of_client} "
            f"{order} LIMIT {limit}) AS r {outside}{order} LIMIT {limit}"
        )
        return sql, params
    client: list[str] = []
    if selection.rm_not_in is not None:
        client.append(f"NOT (c.rm_id = ANY({param(sorted(selection.rm_not_in))}::text[]))")
    if not selection.any_client:
        client.append("c.rm_id IS NOT NULL")
    limit = param(PAGE_LIMIT)
    sql = (
        f"SELECT {_REFUSAL}, c.rm_id "  # noqa: S608 - fixed conditions, bound values
        "FROM fu_refusals r LEFT JOIN fu_clients c ON c.client_id = r.client_id "
        f"WHERE {' AND '.join(clauses + client) or 'true'} {order} LIMIT {limit}"
    )
    return sql, params


RECENT = 1000
"""How many of the newest refusals (of the rule, of the branch) a named team's page is first
looked for in."""


def recent_team_statement(selection: RefusalSelection) -> tuple[str, list[Any]]:
    """A named team's page among the newest :data:`RECENT` refusals selected by rule and
    branch, each joined to its client (by its key) to test the RM. When it finds a whole page,
    that page is the team's newest: every refusal it did not look at is older, in the page's
    order, than every one it did. A team with many of the refusals (a dense team) finds its
    page there in fewer pages than the read from its clients, which reads all the team's
    refusals; a sparse team pays for :data:`RECENT` refusals before that read. ``OFFSET 0``
    keeps the client a lookup per refusal (a generic plan would otherwise hash every client
    of the team)."""
    if selection.rm_in is None:
        raise ValueError("a named team's statement needs rm_in")
    param = Placeholders()
    params = param.values
    clauses: list[str] = []
    if selection.rule is not None:
        clauses.append(f"r.rule = {param(selection.rule)}")
    if selection.branch_id is not None:
        clauses.append(f"r.branch_id = {param(selection.branch_id)}")
    client = [f"c.rm_id = ANY({param(sorted(selection.rm_in))}::text[])"]
    if selection.rm_not_in is not None:
        client.append(f"NOT (c.rm_id = ANY({param(sorted(selection.rm_not_in))}::text[]))")
    order = "ORDER BY r.occurred_at DESC, r.event_id DESC"
    sql = (
        f"SELECT r.*, c.rm_id FROM (SELECT {_REFUSAL} FROM fu_refusals r "  # noqa: S608 - fixed conditions, bound values
        f"WHERE {' AND '.join(clauses) or 'true'} {order} LIMIT {param(RECENT)}) AS r "
        "CROSS JOIN LATERAL (SELECT c.rm_id FROM fu_clients c WHERE c.client_id = r.client_id "
        f"AND {' AND '.join(client)} OFFSET 0) AS c {order} LIMIT {param(PAGE_LIMIT)}"
    )
    return sql, params


@dataclass(frozen=True)
class RefusalPage:
    rows: list[dict[str, Any]]
    rules: list[str]
    """Every rule that refused something (the filter's choices; rule ids are not personal)."""


async def refusals(pool: PgPool, selection: RefusalSelection) -> RefusalPage:
    """Newest first (by the refused event's instant), at most ``PAGE_LIMIT``. A named team's
    page is first looked for among the newest :data:`RECENT` refusals
    (:func:`recent_team_statement`); only when they do not hold a page of the team's is it read
    from the team's clients (:func:`refusals_statement`). Both in one snapshot."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        rows: list[Any] = []
        if selection.rm_in is not None:
            sql, params = recent_team_statement(selection)
            rows = await conn.fetch(sql, *params)
        if len(rows) < PAGE_LIMIT:
            sql, params = refusals_statement(selection)
            rows = await conn.fetch(sql, *params)
        rules = await conn.fetch(RULES)
    return RefusalPage(rows=[dict(r) for r in rows], rules=[r["rule"] for r in rules])

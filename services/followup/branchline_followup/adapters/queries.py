"""SQL of the followup read models, read side: the work list, the client 360, the records of
the quality measures. Keyword-only arguments, no HTTP concerns. Every row is read through
:mod:`branchline_shared.postgres.row_guard`: one client's bad stored row is skipped (logged,
counted), never a failure of the whole answer (issue 9)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from branchline_followup.adapters.read_models import (
    FACT_COLUMNS,
    TASK_COLUMNS,
    ClientFacts,
    facts_from_row,
    task_from_row,
)
from branchline_followup.domain import SurveyScores, TaskKind
from branchline_followup.domain.quality import DIMENSIONS
from branchline_shared.postgres.pool import PgConnection, PgPool
from branchline_shared.postgres.row_guard import (
    decode_row,
    decode_rows,
    readable,
    select_list,
)
from branchline_shared.postgres.statements import Placeholders

_TASK_FIELDS = tuple(c for c in TASK_COLUMNS if c != "closed_by_event_id")
"""A task's columns as the views show them (which event closed a task is not shown)."""
_TASK_VIEW = [*_TASK_FIELDS, "overdue_at", "outcome"]
TASK_VIEW_COLUMNS = select_list(
    _TASK_VIEW, instants={"opened_at", "due_at", "closed_at", "overdue_at"}
)
"""The task view's columns, instants guarded (``row_guard.select_list``)."""
_KEY = "fu_tasks.due_at::text AS key_due_at"
"""The keyset's due_at as stored, as text: a page goes on past a row whose due_at Python cannot
hold."""
FACT_INSTANTS = frozenset(
    {
        "registered_at",
        "last_event_at",
        "last_contact_at",
        "identity_verified_at",
        "first_business_at",
        "last_business_at",
        "account_closed_at",
        "stage_as_of",
        "stage_changes_at",
    }
)
_FACT_SELECT = select_list(["client_id", *FACT_COLUMNS], instants=FACT_INSTANTS)


def task_row(values: dict[str, Any]) -> dict[str, Any]:
    """A task row that decodes as a task (known kind, rule and status; aware instants), as
    the dict the views are made from; raises if it does not."""
    task_from_row(values, _TASK_FIELDS)
    values.pop("key_due_at", None)
    return values


def _complaint_row(values: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(values["received_at"], datetime):
        raise TypeError("received_at")
    for code in ("complaint_id", "severity", "status"):
        if not isinstance(values[code], str):
            raise TypeError(code)
    return values


def _survey_row(values: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(values["answered_at"], datetime):
        raise TypeError("answered_at")
    SurveyScores(**{d: float(values[d]) for d in DIMENSIONS})  # each score 0..100 (D-10)
    return values


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


_EVERYONE_BUT = """(
    WITH RECURSIVE staff AS (
        (SELECT assignee FROM fu_tasks ORDER BY assignee LIMIT 1)
        UNION ALL
        SELECT (SELECT t.assignee FROM fu_tasks t WHERE t.assignee > s.assignee
                ORDER BY t.assignee LIMIT 1)
        FROM staff s WHERE s.assignee IS NOT NULL
    )
    SELECT assignee FROM staff
    WHERE assignee IS NOT NULL AND assignee <> ALL({named}::text[])
)"""
"""The default supervisor's team, "everyone but the named teams": every assignee the tasks
know (``SELECT DISTINCT assignee``, read as one probe of the owner's index per assignee,
``fu_tasks_owner_by_status``) but ``{named}``. ``assignee`` is NOT NULL and compared in the
column's (deterministic) collation, so the walk meets each assignee once (#12)."""


READ_PAGES = 4
"""A task page reads at most this many pages' worth of rows (``READ_PAGES * limit``): rows it
skips as unreadable (``task_row``: an unknown kind, rule or status, an instant Python cannot
hold) count, so a scope of such rows is read in bounded steps, not to its end (#12)."""


@dataclass(frozen=True)
class TaskRows:
    """A task page's rows and, when the read stopped at :data:`READ_PAGES` before the scope's
    end with fewer rows than asked, ``resume_after``: the keyset of the last row read (a skipped
    one), from which the next page goes on. None: the rows are all there is up to the page's
    end (a full page, or the scope's end)."""

    rows: list[dict[str, Any]]
    resume_after: tuple[datetime | str, uuid.UUID] | None = None


def cursor_key(text: str) -> datetime | str | None:
    """A stored due_at's text as a next-page key a cursor can carry: an aware instant, or
    PostgreSQL's ``infinity`` / ``-infinity``; None for another instant Python cannot hold
    (year 10000, BC), which a read does not stop at (it reads on to the next row)."""
    if text in ("infinity", "-infinity"):
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


_KINDS = frozenset(kind.value for kind in TaskKind)
"""The task kinds' words, written into a page's statement as they are (``list_tasks``)."""

_BEFORE_ALL = uuid.UUID(int=0)
"""The first page's keyset id, with ``-infinity``: before every task's key (a task's id is
never the nil UUID; #12)."""

_SHOWN = ("open", "done", "cancelled")
"""The statuses a task view shows (a stored row with any other is skipped as unreadable,
``task_row``): a page with no status filter is read one status at a time."""


_AFTER_ALL = uuid.UUID(int=(1 << 128) - 1)
"""The greatest UUID: ``(due_at, id) > (t, _AFTER_ALL)`` is ``due_at > t`` (#12)."""


def _sla_range(
    status: str | None, now: datetime, soon: datetime
) -> tuple[tuple[str, uuid.UUID], str]:
    """An owner's kind page's SLA filter as its walk's range: the keyset it starts after and
    the due_at it ends at (inclusive), as the text a statement casts: overdue due by now,
    due soon after now and by ``soon``, on track after ``soon``; no SLA filter, all of it."""
    if status == "overdue":
        return ("-infinity", _BEFORE_ALL), now.isoformat()
    if status == "due_soon":
        return (now.isoformat(), _AFTER_ALL), soon.isoformat()
    if status == "on_track":
        return (soon.isoformat(), _AFTER_ALL), "infinity"
    return ("-infinity", _BEFORE_ALL), "infinity"


def _sla_clause(status: str | None, now: datetime, soon: datetime, param: Placeholders) -> str:
    """An SLA filter's condition on due_at, ``now`` and ``soon`` bound (only those it uses)."""
    if status == "overdue":
        return f"due_at <= {param(now)}"
    if status == "due_soon":
        return f"due_at > {param(now)} AND due_at <= {param(soon)}"
    return f"due_at > {param(soon)}"


def _key_order(key: tuple[str, uuid.UUID]) -> tuple[int, datetime | None, uuid.UUID]:
    """A keyset as it sorts in PostgreSQL: ``-infinity`` first, ``infinity`` last."""
    due, task = key
    if due in ("-infinity", "infinity"):
        return (-1 if due == "-infinity" else 1), None, task
    return 0, datetime.fromisoformat(due), task


def _later_key(a: tuple[str, uuid.UUID], b: tuple[str, uuid.UUID]) -> tuple[str, uuid.UUID]:
    """The later of two keysets (a page's cursor, its SLA filter's start)."""
    (ra, da, ia), (rb, db, ib) = _key_order(a), _key_order(b)
    if ra != rb or da is None or db is None:
        return a if (ra, ia) > (rb, ib) else b
    return a if (da, ia) > (db, ib) else b


async def list_tasks(
    pool: PgPool,
    *,
    where: TaskFilter,
    after: tuple[datetime | str, uuid.UUID] | None,
    limit: int,
    now: datetime,
    due_soon_window: timedelta,
) -> TaskRows:
    """Tasks ordered by (due_at, id), the page after the keyset ``after`` (its due_at an
    instant, or ``infinity`` / ``-infinity`` from a :class:`TaskRows` ``resume_after``).

    Rows that cannot be read are skipped (``task_row``) and more are fetched, but at most
    :data:`READ_PAGES` x ``limit`` rows are read: past that, with fewer than ``limit`` rows,
    the rows found are returned with ``resume_after``, the key of the last row read, and the
    next page starts there. A scope holding only unreadable rows was read to its end (#12).

    A team's page (``assignee_in``) is each member's page, by the owner's index
    (assignee, status, due_at, id), merged: at most a page per member is read. As one walk of the
    tasks in due order filtered by ``assignee = ANY(...)`` (a generic plan's choice, blind to
    how few the team's tasks are), it read every task to fill the page of a team with few
    (#12). The default supervisor's team (``assignee_not_in``: everyone but the named teams)
    is read the same way, its members being every assignee of a task (:data:`_EVERYONE_BUT`)
    but the named ones, where ``assignee <> ALL(...)`` walked all tasks in due order,
    filtering: the whole table when the named teams hold most of them.

    An RM's, a team's or a kind's tasks are found by (owner or kind, status, due_at, id)
    (followup 019): a page by status pins both and walks due_at; a page with no status is
    read status by status (:data:`_SHOWN`), at most a page each, merged. Filtered on
    status instead, a page by a rare status read the RM's whole history, or for a kind
    every task to the table's end (#12).

    A client's page (``client_id``, with any other filter) reads the client's tasks
    (fu_tasks_of_client, followup 013) and filters and orders those: on a generic plan with
    statistics that say a client holds many tasks, it walked a status's partial index (or the
    owner's or kind's) filtering on client_id, every task of it for a client with few (#12)."""
    clauses: list[str] = []
    param = Placeholders()
    params = param.values

    if where.assignee is not None:
        clauses.append(f"assignee = {param(where.assignee)}")
    team = None
    if where.assignee_in is not None:
        team = f"unnest({param(sorted(where.assignee_in))}::text[])"
        if where.assignee_not_in:  # both given (no caller does): neither scope is dropped
            clauses.append(f"assignee <> ALL({param(sorted(where.assignee_not_in))}::text[])")
    elif where.assignee_not_in:
        team = _EVERYONE_BUT.format(named=param(sorted(where.assignee_not_in)))
    # an owner's page (an RM's or a team's, no client) of a known kind: the pages whose plan
    # needs the kind's word (below); their first and next pages are one statement, the status
    # list a parameter, so a kind has two statements (an RM's, a team's), not eight (#12)
    owner_kind = (
        where.kind in _KINDS
        and where.client_id is None
        and (where.assignee is not None or team is not None)
    )
    if owner_kind:
        # as written (a TaskKind's fixed word, never the caller's text), so each kind has a
        # plan of its own: as a parameter, the generic plan took any kind for an average one
        # (1 / the kinds stored of the tasks) and walked an RM's status by the owner's index
        # filtering on kind, the RM's whole history of the status for a rare kind (#12)
        clauses.append(f"kind = '{TaskKind(str(where.kind)).value}'")
    elif where.kind is not None:
        # bound: a kind's and a client's pages are planned the same either way (one index,
        # the kind's or the client's), so one statement serves every kind (#12)
        clauses.append(f"kind = {param(where.kind)}")
    # a client's page reads the client's tasks first (fu_tasks_of_client), then filters and
    # orders them: planned blind to the client, a walk of a status's part (or of an owner's or
    # a kind's) filtered on client_id read every task of it for a client with few (#12)
    client = None if where.client_id is None else param(where.client_id)
    if where.due_before is not None:
        clauses.append(f"due_at < {param(where.due_before)}")
    # an RM's, a team's or a kind's page walks (owner or kind, status, due_at, id), one walk
    # per status shown (followup 019); the status is the walk's, not a partial index's with
    # the owner or kind filtered: that walk reads every task of the status (#12)
    by_status = client is None and (
        where.assignee is not None or team is not None or where.kind is not None
    )
    if where.status in STATUS_FILTERS:
        shown: tuple[str, ...] = (where.status,)
        if not by_status:
            # as written (one of three fixed words, never the caller's text), so the planner
            # sees the status's partial index serve it: fu_tasks_open_by_due,
            # fu_tasks_done_by_due, fu_tasks_cancelled_by_due (followup 014, 017; #12)
            clauses.append(f"status = '{where.status}'")
    elif where.status in SLA_FILTERS:
        shown = ("open",)
        if not by_status:
            clauses.append("status = 'open'")
        soon = now + due_soon_window
        if not owner_kind:  # an owner's kind page bounds its walk instead (below)
            clauses.append(_sla_clause(where.status, now, soon, param))
    else:
        shown = _SHOWN
    sla_start = None
    if owner_kind:
        # an SLA filter as the walk's range: its start the first keyset, its end a bound
        # parameter (``infinity`` for on track), so the three SLA filters are one statement
        # of the kind's owner page, not a text each (#12). A page with no SLA filter keeps its
        # statement without the end: with the end on every page, warm reads were slower
        # (9.4 against 5.7 ms a kind's 8 pages, bench/profile_kind_statements.py)
        sla_start, sla_end = _sla_range(where.status, now, now + due_soon_window)
        if where.status in SLA_FILTERS:
            clauses.append(f"fu_tasks.due_at <= {param(sla_end)}::text::timestamptz")
    # an array, not VALUES: one VALUES row would be folded into the walk as a constant, and
    # the constant status let the planner pick its partial index with the kind filtered
    if owner_kind:
        statuses = f"unnest({param(list(shown))}::text[]) AS part(status)"
    else:
        statuses = f"unnest('{{{','.join(shown)}}}'::text[]) AS part(status)"  # fixed words
    where_sql = " AND ".join(clauses) or "true"
    # every task's page with no status (and no owner, kind or client) is read status by status
    # from the statuses' partial indexes (followup 014, 017), at most a page each, merged: one
    # walk in due order needed fu_tasks_by_due (due_at, id), an index entry on every task's
    # creation and closing that followup 022 drops (#12). A client's page keeps its own index
    # (fu_tasks_of_client): a status's part walked for one client's tasks reads them all.
    split = not by_status and shown == _SHOWN and client is None
    # the client's tasks as a materialized CTE named as the table: planned on its own, its one
    # condition is client_id, which only fu_tasks_of_client serves, so no ordered walk filtered
    # on client_id can be chosen whatever the statistics say; at most the client's tasks
    # are read, as before for a client with many (followup 013)
    source = "fu_tasks"
    if client is not None:
        source = "client_tasks AS fu_tasks"
    rows: list[dict[str, Any]] = []
    keyset: tuple[str, uuid.UUID] | None = None
    if after is not None:
        due = after[0]
        keyset = (due if isinstance(due, str) else due.isoformat(), after[1])
    if sla_start is not None:
        # the first page as the next page after the least key: one statement for both, its
        # keyset the walk's range (a NULL-able cursor's OR is a filter on a generic plan),
        # starting where the SLA filter does
        keyset = sla_start if keyset is None else _later_key(keyset, sla_start)
    read = 0
    while len(rows) < limit:
        wanted = limit - len(rows)
        page_params = list(params)
        sql = f"SELECT {TASK_VIEW_COLUMNS}, {_KEY} FROM {source} WHERE {where_sql}"  # noqa: S608 - fixed identifiers, bound values
        if team is not None:
            sql += " AND fu_tasks.assignee = team.member"
        if by_status:
            sql += " AND fu_tasks.status = part.status"
        if keyset is not None:
            page_params += [keyset[0], keyset[1]]
            n = len(page_params)
            sql += f" AND (fu_tasks.due_at, fu_tasks.id) > (${n - 1}::text::timestamptz, ${n})"
        page_params.append(wanted)
        order = f" ORDER BY fu_tasks.due_at, fu_tasks.id LIMIT ${len(page_params)}"
        if split:
            # one walk per status, each of its own partial index, merged (followup 022)
            arms = [f"({sql} AND fu_tasks.status = '{status}'{order})" for status in shown]
            sql = (
                f"SELECT page.* FROM ({' UNION ALL '.join(arms)}) AS page "  # noqa: S608 - fixed identifiers and words, bound values
                f"ORDER BY page.key_due_at::timestamptz, page.id LIMIT ${len(page_params)}"
            )
        else:
            sql += order
        if team is not None or by_status:
            sources = [f"{team} AS team(member)"] if team is not None else []
            if by_status:
                sources.append(statuses)
            sql = (
                f"SELECT page.* FROM {' CROSS JOIN '.join(sources)} "  # noqa: S608 - fixed identifiers, bound values
                f"CROSS JOIN LATERAL ({sql}) AS page "
                f"ORDER BY page.key_due_at::timestamptz, page.id LIMIT ${len(page_params)}"
            )
        if client is not None:
            sql = (
                "WITH client_tasks AS MATERIALIZED "  # noqa: S608 - fixed identifiers, bound values
                f"(SELECT * FROM fu_tasks WHERE client_id = {client}) {sql}"
            )
        raw = await pool.fetch(sql, *page_params)
        read += len(raw)
        rows += decode_rows(raw, task_row, query="followups.list", key="id")
        if len(raw) < wanted:
            break
        keyset = (raw[-1]["key_due_at"], raw[-1]["id"])
        if len(rows) < limit and read >= READ_PAGES * limit:
            # the rows read were mostly skipped: stop, and say where the next page starts
            key = cursor_key(keyset[0])
            if key is not None:
                return TaskRows(rows, (key, keyset[1]))
    return TaskRows(rows)


async def fetch_task_view(pool: PgPool, task_id: uuid.UUID) -> dict[str, Any] | None:
    """The task, or None if there is none or its row cannot be decoded (skipped, counted)."""
    row = await pool.fetchrow(f"SELECT {TASK_VIEW_COLUMNS} FROM fu_tasks WHERE id = $1", task_id)  # noqa: S608 - fixed identifiers, bound values
    return None if row is None else decode_row(row, task_row, query="followups.task")


async def _client_facts(conn: PgConnection, client_id: str, *, query: str) -> ClientFacts | None:
    row = await conn.fetchrow(
        f"SELECT {_FACT_SELECT} FROM fu_clients WHERE client_id = $1",  # noqa: S608 - fixed identifiers, bound values
        client_id,
    )
    return None if row is None else decode_row(row, facts_from_row, query=query)


@dataclass(frozen=True)
class ClientRecord:
    facts: ClientFacts
    open_tasks: list[dict[str, Any]]
    open_complaints: list[dict[str, Any]]
    surveys: list[dict[str, Any]]


async def client_record(pool: PgPool, client_id: str) -> ClientRecord | None:
    """The client 360's records; None when the client is unknown, or when its own row cannot be
    decoded (skipped and counted like any bad row). A bad task, complaint or survey row is
    left out of the view; the rest is shown."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        facts = await _client_facts(conn, client_id, query="client360.client")
        if facts is None:
            return None
        tasks = await conn.fetch(
            f"SELECT {TASK_VIEW_COLUMNS} FROM fu_tasks WHERE client_id = $1 AND status = 'open' "  # noqa: S608 - fixed identifiers, bound values
            "ORDER BY fu_tasks.due_at, fu_tasks.id",
            client_id,
        )
        complaints = await conn.fetch(
            "SELECT "  # noqa: S608 - fixed identifiers
            + select_list(
                [
                    "complaint_id",
                    "severity",
                    "topic",
                    "status",
                    "owner_id",
                    "received_at",
                    "acknowledged_at",
                    "resolved_at",
                ],
                instants={"received_at", "acknowledged_at", "resolved_at"},
            )
            + " FROM fu_complaints WHERE client_id = $1 AND status <> 'closed' "
            "ORDER BY fu_complaints.received_at, complaint_id",
            client_id,
        )
        surveys = await conn.fetch(
            "SELECT "  # noqa: S608 - fixed identifiers
            + select_list(
                ["event_id", "visit_id", "answered_at", *DIMENSIONS], instants={"answered_at"}
            )
            + " FROM fu_surveys WHERE client_id = $1 ORDER BY fu_surveys.answered_at, event_id",
            client_id,
        )
    return ClientRecord(
        facts=facts,
        open_tasks=decode_rows(tasks, task_row, query="client360.tasks", key="id"),
        open_complaints=decode_rows(complaints, _complaint_row, query="client360.complaints"),
        surveys=decode_rows(surveys, _survey_row, query="client360.surveys"),
    )


_VISIT_INSTANTS = ("arrived_at", "started_at", "ended_at")


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
            f"SELECT {select_list(['rule', 'kind', 'due_at', 'status', 'closed_at'], instants={'due_at', 'closed_at'})} "  # noqa: S608, E501 - fixed identifiers, bound values
            f"FROM fu_tasks WHERE due_at >= $1 AND due_at < $2{where}",
            *params,
        )
        where, params = scoped("rm_id", [start, end])
        visits = await conn.fetch(
            f"SELECT {select_list(_VISIT_INSTANTS, instants=_VISIT_INSTANTS)} FROM fu_visits "  # noqa: S608 - fixed identifiers, bound values
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
            f"SELECT {_FACT_SELECT} FROM fu_clients "  # noqa: S608 - fixed identifiers, bound values
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
        tasks=readable(tasks, query="quality.tasks"),
        visits=readable(visits, query="quality.visits"),
        surveys=[dict(r) for r in surveys],
        complaints=[dict(r) for r in complaints],
        clients=decode_rows(client_rows, facts_from_row, query="quality.clients"),
    )

"""The followup API's and console's reads on generic plans (#12).

asyncpg prepares every statement; after five runs PostgreSQL may switch to a generic plan,
planned blind to the bound values. Each read below is run against a filled database through a
pool that records its statements, and each statement's generic plan must read no table that
grows with activity (tasks, visits, surveys, complaints, refusals, timelines...) by a
sequential scan. The worker's statements are checked in ``test_followup_client_indexes``."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

import pytest

from branchline_followup.adapters import console_queries, console_refusals, queries
from branchline_followup.adapters import service_loop_queries as loop
from branchline_followup.adapters.console_read_models import client_page_records
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_followup.domain import TaskKind
from branchline_followup.entrypoints.http_deps import task_in_scope, task_scope_filter
from branchline_shared.access.scope import StaffDirectory
from branchline_shared.http.auth import Principal, Role
from branchline_shared.postgres.pool import PgPool
from branchline_shared.settings import BranchlineSettings
from tests.support.generic_plans import Recording, generic_plan, whole_reading_statements
from tests.support.stack import Infra, make_settings
from tests.support.templates import copy_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

N = 20_000
CLIENTS = N // 10
NOW = datetime(2026, 6, 1, tzinfo=UTC)

FILL = f"""
INSERT INTO fu_clients (client_id, client_type, rm_id, branch_id, registered_at, last_event_at)
SELECT 'C-' || n, 'individual', 'rm-' || (n % 50), 'BR-' || (n % 20), now(), now()
FROM generate_series(1, {CLIENTS}) AS n;
INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at,
                      due_at, deadline_profile, source_event_id, status, closed_at)
SELECT gen_random_uuid(), 'survey', 'D-07', 'C-' || (n % {CLIENTS}), 'BR-' || (n % 20),
       'rm-' || (n % 50), 's', now() - interval '1 year',
       timestamptz '2026-01-01' + n * interval '17 minutes', 'calendar', gen_random_uuid(),
       CASE WHEN n % 20 = 0 THEN 'open' WHEN n % 3 = 0 THEN 'cancelled' ELSE 'done' END,
       CASE WHEN n % 20 = 0 THEN NULL
            ELSE timestamptz '2026-01-01' + n * interval '17 minutes' END
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_visits (client_id, visit_id, branch_id, rm_id, arrived_at, started_at)
SELECT 'C-' || (n % {CLIENTS}), 'V-' || n, 'BR-' || (n % 20), 'rm-' || (n % 50),
       CASE WHEN n % 4 <> 0 THEN timestamptz '2026-01-01' + n * interval '17 minutes' END,
       timestamptz '2026-01-01' + n * interval '17 minutes'
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_surveys (event_id, client_id, branch_id, rm_id, visit_id, answered_at, attitude,
                        professionalism, response_speed, risk_management, convenience)
SELECT gen_random_uuid(), 'C-' || (n % {CLIENTS}), 'BR-' || (n % 20), 'rm-' || (n % 50),
       'V-' || n, timestamptz '2026-01-01' + n * interval '17 minutes', 80, 80, 80, 80, 80
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_complaints (client_id, complaint_id, branch_id, rm_id, severity, received_at,
                           status)
SELECT 'C-' || (n % {CLIENTS}), 'K-' || n, 'BR-' || (n % 20), 'rm-' || (n % 50), 'low',
       timestamptz '2026-01-01' + n * interval '17 minutes',
       CASE WHEN n % 10 = 0 THEN 'received' ELSE 'closed' END
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_corrective_actions (client_id, complaint_id, action_id, branch_id, root_cause,
                                   action_kind, owner_id, planned_at, due_at)
SELECT 'C-' || (n % {CLIENTS}), 'K-' || n, 'A-1', 'BR-' || (n % 20), 'process', 'training',
       'rm-' || (n % 50), timestamptz '2026-01-01' + n * interval '17 minutes',
       timestamptz '2026-01-08' + n * interval '17 minutes'
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_renegotiations (event_id, client_id, branch_id, rm_id, subject, reason,
                               renegotiated_at, promised_by)
SELECT gen_random_uuid(), 'C-' || (n % {CLIENTS}), 'BR-' || (n % 20), 'rm-' || (n % 50), 's',
       'r', timestamptz '2026-01-01' + n * interval '17 minutes',
       timestamptz '2026-01-08' + n * interval '17 minutes'
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_business_events (event_id, client_id, occurred_at, product_risk, amount)
SELECT gen_random_uuid(), 'C-' || (n % {CLIENTS}),
       timestamptz '2026-01-01' + n * interval '17 minutes', 'R2', 100
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_client_timeline (client_id, occurred_at, event_id, type, branch_id, actor_id,
                                actor_role)
SELECT 'C-' || (n % {CLIENTS}), timestamptz '2026-01-01' + n * interval '17 minutes',
       gen_random_uuid(), 'visit.arrived', 'BR-' || (n % 20), 'rm-1', 'rm'
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_client_consents (client_id, purpose, granted, changed_at)
SELECT 'C-' || n, 'marketing', true, now() FROM generate_series(1, {CLIENTS}) AS n;
INSERT INTO fu_client_assessments (client_id, level, assessed_at, event_id)
SELECT 'C-' || n, 'balanced', now(), gen_random_uuid() FROM generate_series(1, {CLIENTS}) AS n;
INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, branch_id, client_id,
                         refused_type, actor_id, actor_role)
SELECT gen_random_uuid(), 'D-' || lpad((n % 17 + 1)::text, 2, '0'), 't',
       timestamptz '2026-01-01' + n * interval '17 minutes', now(), 'BR-' || (n % 20),
       'C-' || (n % {CLIENTS}), 'visit.arrived', 'rm-1', 'rm'
FROM generate_series(1, {N}) AS n;
INSERT INTO fu_staff (staff_id, branch_id)
SELECT 'rm-' || n, 'BR-' || (n % 20) FROM generate_series(0, 49) AS n;
INSERT INTO fu_staff_training (event_id, staff_id, hours, completed_at)
SELECT gen_random_uuid(), 'rm-' || (n % 50), 2,
       timestamptz '2026-01-01' + n * interval '17 minutes'
FROM generate_series(1, {N}) AS n;
ANALYZE;
"""

WALKS: dict[str, frozenset[str]] = {}
"""Reads left to walk an index filtering, and why: none. (Before #12's Round 14, the default
supervisor's team, ``assignee <> ALL``, walked the tasks in due order, filtering; before
Round 19, the list by status done or cancelled, followup 017; before Round 20, an admin's
list by kind, with or without a status: followup 019's kind index.)"""
SMALL = frozenset({"fu_staff"})
"""Tables that grow with the staff, not with activity: a scan of them is a scan of the
organisation chart."""


@pytest.fixture(scope="module")
async def filled_database(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated followup database holding :data:`FILL` (analyzed), filled once per module:
    the fill took 7-14 s of each test's setup on a loaded machine. Nothing stays connected to
    it: each test reads a copy of it (``filled``)."""
    settings = make_settings(infra, tmp_path_factory.mktemp("filled"))
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    try:
        await pool.execute(FILL)
    finally:
        await pool.close()
    return urlsplit(settings.followup_database_url).path.lstrip("/")


@pytest.fixture
async def filled(settings: BranchlineSettings, filled_database: str) -> AsyncIterator[PgPool]:
    """The test's own followup database, a copy of the filled one (its rows, its statistics
    and its database settings): what a test inserts, deletes or updates no other test sees."""
    await copy_database(settings.followup_database_url, filled_database)
    await prepare_database(settings)  # finds every migration applied, checks their checksums
    pool = await open_read_model_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


T = NOW - timedelta(days=30)
TASK = uuid.uuid4()
Read = Callable[[PgPool], Awaitable[object]]


def tasks(where: queries.TaskFilter, after: bool = False) -> Read:
    return lambda pool: queries.list_tasks(
        pool,
        where=where,
        after=(T, TASK) if after else None,
        limit=50,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )


READS: dict[str, Read] = {
    "work list": tasks(queries.TaskFilter(assignee="rm-7")),
    "work list, next page": tasks(queries.TaskFilter(assignee="rm-7"), after=True),
    "work list, open": tasks(queries.TaskFilter(assignee="rm-7", status="open")),
    "work list, overdue": tasks(queries.TaskFilter(assignee="rm-7", status="overdue")),
    "work list, due soon": tasks(queries.TaskFilter(assignee="rm-7", status="due_soon")),
    "work list, on track": tasks(queries.TaskFilter(assignee="rm-7", status="on_track")),
    "work list, kind": tasks(queries.TaskFilter(assignee="rm-7", kind="survey")),
    "all tasks": tasks(queries.TaskFilter()),
    "all tasks, overdue": tasks(queries.TaskFilter(status="overdue")),
    "all tasks, done": tasks(queries.TaskFilter(status="done")),
    "all tasks, done, next page": tasks(queries.TaskFilter(status="done"), after=True),
    "all tasks, cancelled": tasks(queries.TaskFilter(status="cancelled")),
    "all tasks, cancelled, next page": tasks(queries.TaskFilter(status="cancelled"), after=True),
    "all tasks, open, next page": tasks(queries.TaskFilter(status="open"), after=True),
    "all tasks, cancelled, due before": tasks(
        queries.TaskFilter(status="cancelled", due_before=NOW), after=True
    ),
    "all tasks, kind": tasks(queries.TaskFilter(kind="survey")),
    "all tasks, kind, cancelled": tasks(queries.TaskFilter(kind="survey", status="cancelled")),
    "work list, done": tasks(queries.TaskFilter(assignee="rm-7", status="done")),
    "work list, cancelled, next page": tasks(
        queries.TaskFilter(assignee="rm-7", status="cancelled"), after=True
    ),
    "a client's cancelled tasks": tasks(
        queries.TaskFilter(client_id="C-7", status="cancelled"), after=True
    ),
    "a team's cancelled tasks": tasks(
        queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}), status="cancelled"),
        after=True,
    ),
    "the default team's done tasks": tasks(
        queries.TaskFilter(assignee_not_in=frozenset({"rm-7"}), status="done"), after=True
    ),
    "all tasks, due before": tasks(queries.TaskFilter(due_before=NOW)),
    "a client's tasks": tasks(queries.TaskFilter(client_id="C-7")),
    "a team's tasks": tasks(queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}))),
    "a team's overdue tasks": tasks(
        queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}), status="overdue")
    ),
    "the default team's tasks": tasks(queries.TaskFilter(assignee_not_in=frozenset({"rm-7"}))),
    "a task": lambda pool: queries.fetch_task_view(pool, TASK),
    "client 360": lambda pool: queries.client_record(pool, "C-7"),
    "client page": lambda pool: client_page_records(pool, "C-7"),
    "client service loop": lambda pool: loop.client_service_loop(pool, "C-7"),
    "team board": lambda pool: console_queries.team_board(
        pool, now=NOW, due_soon_until=NOW + timedelta(days=2), done_since=NOW - timedelta(days=1)
    ),
    "refusals": lambda pool: console_refusals.refusals(
        pool, console_refusals.RefusalSelection(any_client=True)
    ),
    "refusals of a team": lambda pool: console_refusals.refusals(
        pool, console_refusals.RefusalSelection(rule="D-03", rm_in=frozenset({"rm-7"}))
    ),
    "quality of a branch": lambda pool: queries.quality_records(
        pool, branch_id="BR-3", rm_id=None, start=T, end=NOW
    ),
    "quality of an RM": lambda pool: queries.quality_records(
        pool, branch_id=None, rm_id="rm-7", start=T, end=NOW
    ),
    "improvement of a branch": lambda pool: loop.improvement_records(
        pool, branch_id="BR-3", rm_id=None, start=T, end=NOW
    ),
    "improvement of an RM": lambda pool: loop.improvement_records(
        pool, branch_id=None, rm_id="rm-7", start=T, end=NOW
    ),
    "complaint statistics": lambda pool: loop.statistics_records(
        pool, branch_ids=None, start=T, end=NOW
    ),
    "complaint statistics of branches": lambda pool: loop.statistics_records(
        pool, branch_ids=["BR-3", "BR-4"], start=T, end=NOW
    ),
}


async def test_no_read_scans_a_growing_table_on_its_generic_plan(filled: PgPool) -> None:
    """One filled database for every read (filling it is most of the test's time); every
    scanning statement is reported, not only the first."""
    scans: dict[str, str] = {}
    for name, read in READS.items():
        statements: list[str] = []
        await read(cast(PgPool, Recording(filled, statements)))
        assert statements, name
        small = SMALL | WALKS.get(name, frozenset())
        whole = await whole_reading_statements(filled, statements, small=small)
        for statement, plan in whole.items():
            scans.setdefault(statement, f"{name}:\n{plan}")
    assert not scans, "\n\n".join(f"{s}\n{p}" for s, p in scans.items())


OLD_BOARD = (
    "SELECT assignee, "
    "count(*) FILTER (WHERE status = 'open') AS open, "
    "count(*) FILTER (WHERE status = 'open' AND due_at > $1 AND due_at <= $2) AS due_soon, "
    "count(*) FILTER (WHERE status = 'open' AND due_at <= $1) AS overdue, "
    "count(*) FILTER (WHERE status = 'open' AND escalated_to IS NOT NULL) AS escalated, "
    "count(*) FILTER (WHERE status = 'done' AND closed_at >= $3) AS done_since "
    "FROM fu_tasks WHERE status = 'open' OR closed_at >= $3 "
    "GROUP BY assignee ORDER BY assignee"
)
"""The board's statement before #12: the rewritten one must count exactly as it did."""

ODD_TASKS = """
INSERT INTO fu_tasks (id, kind, rule, client_id, assignee, subject, opened_at, due_at,
                      deadline_profile, source_event_id, status, closed_at, escalated_to)
VALUES
    -- open, escalated, and (a bad row) with a closing instant: counted once, as open
    (gen_random_uuid(), 'survey', 'D-07', 'C-1', 'rm-odd-' || $2, 's', $1, $1, 'calendar',
     gen_random_uuid(), 'open', $1, 'sup-1'),
    -- only a recent cancellation: on the board, nothing counted
    (gen_random_uuid(), 'survey', 'D-07', 'C-1', 'rm-cancelled-' || $2, 's', $1, $1, 'calendar',
     gen_random_uuid(), 'cancelled', $1, NULL),
    -- done before the window: not on the board
    (gen_random_uuid(), 'survey', 'D-07', 'C-1', 'rm-old-' || $2, 's', $1, $1, 'calendar',
     gen_random_uuid(), 'done', $1 - interval '2 days', NULL)
"""


async def test_the_team_board_counts_as_before(filled: PgPool) -> None:
    for days in (0, 30, 200):
        now = NOW - timedelta(days=days)
        await filled.execute(ODD_TASKS, now, str(days))
        board = await console_queries.team_board(
            filled,
            now=now,
            due_soon_until=now + timedelta(days=2),
            done_since=now - timedelta(days=1),
        )
        before = await filled.fetch(
            OLD_BOARD, now, now + timedelta(days=2), now - timedelta(days=1)
        )
        assert [console_queries.BoardRow(**dict(r)) for r in before] == board
        assignees = {r.assignee for r in board}
        assert {f"rm-odd-{days}", f"rm-cancelled-{days}"} <= assignees
        assert f"rm-old-{days}" not in assignees
        assert any(r.done_since for r in board)
        assert any(r.overdue for r in board)


async def test_the_refusals_rules_are_the_distinct_rules_in_order(filled: PgPool) -> None:
    await filled.execute(
        "INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, "
        "refused_type, actor_id, actor_role) "
        "SELECT gen_random_uuid(), r, 't', now(), now(), 'x', 'a', 'rm' "
        "FROM unnest(ARRAY['D-1', 'D-10', 'd-02', 'D-02 ', 'Ä', 'D-02']) AS r"
    )
    page = await console_refusals.refusals(filled, console_refusals.RefusalSelection())
    want = await filled.fetch("SELECT DISTINCT rule FROM fu_refusals ORDER BY rule")
    assert page.rules == [r["rule"] for r in want]
    assert len(page.rules) == 17 + 4


TIED_TASKS = """
INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at,
                      due_at, deadline_profile, source_event_id, status, closed_at)
SELECT gen_random_uuid(), 'satisfaction_survey', 'D-01b', 'C-1', 'BR-1', 'rm-t' || (n % 3),
       's', $1::timestamptz - interval '30 days',
       $1::timestamptz + (n / 4 - 5) * interval '1 hour', 'calendar', gen_random_uuid(),
       CASE WHEN n % 5 = 0 THEN 'done' ELSE 'open' END,
       CASE WHEN n % 5 = 0 THEN $1::timestamptz END
FROM generate_series(1, 120) AS n
"""
"""Readable tasks of three members of staff, due four at a time at the same instant (ties are
broken by the task's id, across members), some overdue, some due soon, some done."""


async def test_a_teams_work_list_pages_are_its_members_tasks_in_due_order(filled: PgPool) -> None:
    """A team's page, read member by member and merged, is the one walk it replaced: every
    task of the members, in (due_at, id) order, page after page, with each status filter."""
    await filled.execute(TIED_TASKS, NOW)
    team = frozenset({"rm-t1", "rm-t2"})
    for status in (None, "open", "overdue", "due_soon", "done"):
        want = await filled.fetch(
            "SELECT id FROM fu_tasks WHERE assignee = ANY($1::text[]) "
            "AND ($2::text IS NULL OR status = $2 OR ($2 IN ('overdue', 'due_soon') "
            "AND status = 'open' AND CASE $2 WHEN 'overdue' THEN due_at <= $3 "
            "ELSE due_at > $3 AND due_at <= $3 + interval '2 days' END)) "
            "ORDER BY due_at, id",
            sorted(team),
            status,
            NOW,
        )
        got = await _walked_pages(filled, queries.TaskFilter(assignee_in=team, status=status))
        assert got == [r["id"] for r in want], status
        assert len(got) > 7, status


NAMED = StaffDirectory(
    supervisors={"rm-t1": "sup-x", "rm-7": "sup-1", "rm-8": "sup-1"},
    default_supervisor="sup-default",
)
ROLES = {
    "admin": Principal("admin-1", frozenset({Role.ADMIN})),
    "a named team's supervisor": Principal("sup-x", frozenset({Role.SUPERVISOR})),
    "the default supervisor": Principal("sup-default", frozenset({Role.SUPERVISOR})),
    "an RM of a named team": Principal("rm-t1", frozenset({Role.RM})),
    "an RM of the default team": Principal("rm-t2", frozenset({Role.RM})),
}


@pytest.mark.parametrize("role", sorted(ROLES))
async def test_each_role_pages_exactly_the_tasks_in_its_scope(filled: PgPool, role: str) -> None:
    """The work list of each role, page after page, is every task the one-task rule
    (``task_in_scope``) lets it see, in (due_at, id) order, and nothing else: the default
    supervisor's team, read as every assignee of a task but the named teams' members (#12),
    never shows a named team's RM (rm-t1, rm-7, rm-8) and shows every other assignee."""
    await filled.execute(TIED_TASKS, NOW)
    await filled.execute(
        "UPDATE fu_tasks SET client_id = 'C-1', kind = 'satisfaction_survey', rule = 'D-01b' "
        "WHERE assignee IN ('rm-7', 'rm-8', 'rm-9') AND due_at < timestamptz '2026-02-01'"
    )
    principal = ROLES[role]
    only, never = task_scope_filter(principal, NAMED)
    for status in (None, "open", "overdue", "done"):
        every = await filled.fetch(
            "SELECT id, assignee FROM fu_tasks WHERE client_id = 'C-1' "
            "AND kind = 'satisfaction_survey' AND ($1::text IS NULL OR status = $1 "
            "OR ($1 = 'overdue' AND status = 'open' AND due_at <= $2)) ORDER BY due_at, id",
            status,
            NOW,
        )
        want = [r["id"] for r in every if task_in_scope(principal, NAMED, r["assignee"])]
        got: list[uuid.UUID] = []
        seen: set[str] = set()
        after: tuple[datetime | str, uuid.UUID] | None = None
        while True:
            found = await queries.list_tasks(
                filled,
                where=queries.TaskFilter(
                    client_id="C-1", status=status, assignee_in=only, assignee_not_in=never
                ),
                after=after,
                limit=7,
                now=NOW,
                due_soon_window=timedelta(days=2),
            )
            page = found.rows
            got += [row["id"] for row in page]
            seen |= {row["assignee"] for row in page}
            if len(page) == 7:
                after = (page[-1]["due_at"], page[-1]["id"])
            elif found.resume_after is not None:
                after = found.resume_after
            else:
                break
        assert got == want, status
        assert got, status
        if role == "the default supervisor":
            assert not seen & {"rm-t1", "rm-7", "rm-8"}, status
            assert {"rm-t0", "rm-t2"} <= seen, status
            if status is None:
                assert "rm-9" in seen


async def test_the_boards_closed_part_is_planned_as_a_days_closings(filled: PgPool) -> None:
    """On its generic plan the board's closed part (tasks closed since ``$3``, a day ago) is
    guessed as a bounded range, not as a third of every task ever closed: the guess for an
    open-ended range grows with the closed tasks and would pick a plan for a third of them."""
    closed = await filled.fetchval("SELECT count(*) FROM fu_tasks WHERE status <> 'open'")
    plan = await generic_plan(filled, console_queries.TEAM_BOARD)
    part = [line for line in plan.splitlines() if "fu_tasks_closed_by_time" in line]
    assert part, plan
    guess = re.search(r"rows=(\d+)", part[0])
    assert guess, plan
    guessed = int(guess.group(1))
    assert guessed <= closed // 100, plan


def _index_reads(plan: str) -> list[tuple[str, list[str]]]:
    """Each index scan of the plan, with its detail lines (conditions, filters)."""
    found: list[tuple[str, list[str]]] = []
    for line in plan.splitlines():
        scan = re.search(r"Index (?:Only )?Scan(?: Backward)? (?:using|on) (\w+)", line)
        if scan:
            found.append((scan.group(1), []))
        elif "->" in line:
            found.append(("", []))
        elif found:
            found[-1][1].append(line.strip())
    return [(index, details) for index, details in found if index]


async def _plans_of(pool: PgPool, read: Read) -> list[str]:
    statements: list[str] = []
    await read(cast(PgPool, Recording(pool, statements)))
    return [await generic_plan(pool, s) for s in dict.fromkeys(statements)]


@pytest.mark.parametrize("status", ["open", "overdue", "due_soon", "on_track"])
@pytest.mark.parametrize("team", [False, True])
async def test_an_rms_open_and_sla_pages_read_only_open_tasks(
    filled: PgPool, status: str, team: bool
) -> None:
    """#12: an RM's page (or each member's, for a team) under "open" or an SLA filter reads
    the open part of the RM's tasks (followup 015, since 019 the owner's index by status), not
    every task of the RM due before now filtered on status: no task scan filters."""
    where = (
        queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}), status=status)
        if team
        else queries.TaskFilter(assignee="rm-7", status=status)
    )
    for after in (False, True):
        (plan,) = await _plans_of(filled, tasks(where, after=after))
        scans = [(i, d) for i, d in _index_reads(plan) if i.startswith("fu_tasks")]
        assert [i for i, _ in scans] == ["fu_tasks_owner_by_status"], plan
        assert not any("Filter" in line for _, d in scans for line in d), plan


@pytest.mark.parametrize("status", ["done", "cancelled"])
async def test_a_closed_status_page_reads_only_its_status(filled: PgPool, status: str) -> None:
    """#12: the list by status done or cancelled (no RM, client or team), a first page and a
    next one, reads its status's part of the tasks (followup 017), not every task in due order
    filtered on status, to the table's end when the status is rare: the keyset is the walk's
    only condition and nothing is filtered."""
    for after in (False, True):
        plans = await _plans_of(filled, tasks(queries.TaskFilter(status=status), after=after))
        assert plans
        for plan in plans:
            scans = [(i, d) for i, d in _index_reads(plan) if i.startswith("fu_tasks")]
            assert [i for i, _ in scans] == [f"fu_tasks_{status}_by_due"], plan
            assert not any("Filter" in line for _, d in scans for line in d), plan


@pytest.mark.parametrize("due_before", [False, True])
async def test_every_tasks_page_reads_each_statuss_part(filled: PgPool, due_before: bool) -> None:
    """#12: the list with no status, RM, team, kind or client (and the one due before a
    time), a first page and a next one, reads each status's part of the tasks by its partial
    index (followup 014, 017), at most a page each, merged, with nothing filtered: followup
    022 dropped fu_tasks_by_due (due_at, id), which its one walk in due order read and every
    task's creation and closing wrote."""
    assert await filled.fetchval("SELECT to_regclass('fu_read.fu_tasks_by_due')") is None
    where = queries.TaskFilter(due_before=NOW if due_before else None)
    for after in (False, True):
        plans = await _plans_of(filled, tasks(where, after=after))
        assert plans
        for plan in plans:
            scans = [(i, d) for i, d in _index_reads(plan) if i.startswith("fu_tasks")]
            assert sorted(i for i, _ in scans) == [
                "fu_tasks_cancelled_by_due",
                "fu_tasks_done_by_due",
                "fu_tasks_open_by_due",
            ], plan
            assert not any("Filter" in line for _, d in scans for line in d), plan


OWNED_PAGES: dict[str, tuple[queries.TaskFilter, str]] = {
    "an RM's done tasks": (queries.TaskFilter(assignee="rm-7", status="done"), "owner"),
    "an RM's cancelled tasks": (queries.TaskFilter(assignee="rm-7", status="cancelled"), "owner"),
    "a team's cancelled tasks": (
        queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}), status="cancelled"),
        "owner",
    ),
    "the default team's done tasks": (
        queries.TaskFilter(assignee_not_in=frozenset({"rm-7"}), status="done"),
        "owner",
    ),
    "an RM's tasks": (queries.TaskFilter(assignee="rm-7"), "owner"),
    "a team's tasks": (queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"})), "owner"),
    "a kind's tasks": (queries.TaskFilter(kind="survey"), "kind"),
    "a kind's cancelled tasks": (queries.TaskFilter(kind="survey", status="cancelled"), "kind"),
}


@pytest.mark.parametrize("name", sorted(OWNED_PAGES))
async def test_an_owners_or_kinds_page_reads_only_its_status(filled: PgPool, name: str) -> None:
    """#12: an RM's, a team's or a kind's page, first and next, reads (owner or kind,
    status, due_at, id) with nothing filtered (followup 019): a page with no status reads each
    status's part, at most a page each. Before, a status page read the RM's tasks in due
    order filtering on status (the RM's whole history for a rare status), and a kind's page
    every task in due order filtering on kind (the whole table for a rare kind)."""
    where, owner = OWNED_PAGES[name]
    for after in (False, True):
        plans = await _plans_of(filled, tasks(where, after=after))
        scans = [
            (i, d) for plan in plans for i, d in _index_reads(plan) if i.startswith("fu_tasks")
        ]
        assert {i for i, _ in scans} == {f"fu_tasks_{owner}_by_status"}, plans
        assert not any("Filter" in line for _, d in scans for line in d), plans


CLOSED_TASKS = """
INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at,
                      due_at, deadline_profile, source_event_id, status, closed_at)
SELECT gen_random_uuid(), CASE WHEN n % 4 = 0 THEN 'revisit' ELSE 'satisfaction_survey' END,
       CASE WHEN n % 4 = 0 THEN 'D-08' ELSE 'D-01b' END, 'C-' || (n % 5), 'BR-1',
       'rm-t' || (n % 3), 's', $1::timestamptz - interval '30 days',
       $1::timestamptz + (n / 4 - 5) * interval '1 hour', 'calendar', gen_random_uuid(),
       CASE WHEN n % 7 = 0 THEN 'cancelled' WHEN n % 7 < 3 THEN 'done' ELSE 'open' END,
       CASE WHEN n % 7 < 3 THEN $1::timestamptz END
FROM generate_series(1, 300) AS n
"""
"""Readable tasks only, due four at a time (ties broken by the id), a few cancelled, more
done, most open, a quarter of them revisits (the filled tasks deleted first)."""


async def test_each_status_pages_are_the_tasks_of_that_status_in_due_order(
    filled: PgPool,
) -> None:
    """The list by each status (or none, or overdue), page after page, is every task of
    that status (the old ``status = $1`` condition) in (due_at, id) order, for everyone, for
    one RM and for one kind: an RM's or a kind's page read status by status and merged
    (followup 019) is the one walk it replaced."""
    await filled.execute("DELETE FROM fu_tasks")
    await filled.execute(CLOSED_TASKS, NOW)
    owners = ((None, None), ("rm-t1", None), (None, "revisit"), ("rm-t1", "revisit"))
    for status in (None, "open", "done", "cancelled", "overdue"):
        for assignee, kind in owners:
            await _pages_are_the_filtered_tasks(
                filled, queries.TaskFilter(assignee=assignee, kind=kind, status=status)
            )


async def _pages_are_the_filtered_tasks(
    filled: PgPool, where: queries.TaskFilter, *, some: bool = True
) -> None:
    """``list_tasks`` page after page (7 a page) is every task the filter names (the plain
    conditions, one statement) in (due_at, id) order, and (``some``) there is at least one."""
    want = [
        r["id"]
        for r in await filled.fetch(
            "SELECT id FROM fu_tasks WHERE ($5::text IS NULL OR client_id = $5) "
            "AND ($1::text IS NULL OR status = $1 "
            "OR ($1 = 'overdue' AND status = 'open' AND due_at <= $4)) "
            "AND ($2::text IS NULL OR assignee = $2) "
            "AND ($3::text IS NULL OR kind = $3) ORDER BY due_at, id",
            where.status,
            where.assignee,
            where.kind,
            NOW,
            where.client_id,
        )
    ]
    got = await _walked_pages(filled, where)
    assert got == want, where
    assert got or not some, where


async def _walked_pages(
    filled: PgPool,
    where: queries.TaskFilter,
    *,
    due_soon: timedelta = timedelta(days=2),
    limit: int = 7,
) -> list[uuid.UUID]:
    """Every task ``list_tasks`` serves for the filter, ``limit`` a page, page after page: on
    from a full page's last task, or from a short page's ``resume_after`` (a read stopped
    past skipped rows), to a short page without one."""
    got: list[uuid.UUID] = []
    after: tuple[datetime | str, uuid.UUID] | None = None
    while True:
        found = await queries.list_tasks(
            filled, where=where, after=after, limit=limit, now=NOW, due_soon_window=due_soon
        )
        page = found.rows
        got += [row["id"] for row in page]
        if len(page) == limit:
            after = (page[-1]["due_at"], page[-1]["id"])
        elif found.resume_after is not None:
            after = found.resume_after
        else:
            return got


@pytest.mark.parametrize(
    ("selection", "index"),
    [
        (console_refusals.RefusalSelection(rm_in=frozenset({"rm-7"})), "fu_refusals_by_rm"),
        (
            console_refusals.RefusalSelection(rule="D-03", rm_in=frozenset({"rm-7"})),
            "fu_refusals_by_rm_rule",
        ),
        (
            console_refusals.RefusalSelection(
                rule="D-03", rm_in=frozenset({"rm-7", "rm-8", "rm-9"}), any_client=True
            ),
            "fu_refusals_by_rm_rule",
        ),
        (
            console_refusals.RefusalSelection(
                branch_id="BR-7", rm_in=frozenset({"rm-7"}), rm_not_in=frozenset({"rm-8"})
            ),
            "fu_refusals_by_rm",
        ),
    ],
)
async def test_a_teams_refusals_page_reads_each_members_refusals_by_index(
    filled: PgPool, selection: console_refusals.RefusalSelection, index: str
) -> None:
    """#12: a team's refusals page reads each member's refusals newest first by the RM's
    index (console migration 004: the client's RM on the refusal row), at most a page each;
    it walked every refusal (of the rule) newest first and joined each to its client."""
    sql, _ = console_refusals.refusals_statement(selection)
    plan = await generic_plan(filled, sql)
    reads = _index_reads(plan)
    assert [i for i, _ in reads] == [index], plan
    assert any("Index Cond" in line and "rm_id = team.member" in line for line in reads[0][1]), plan
    assert "fu_clients" not in plan, plan
    if selection.rule is not None:
        assert any("Index Cond" in line and "rule" in line for line in reads[0][1]), plan


OLD_TASKS = (
    "SELECT id FROM fu_tasks WHERE assignee = $1 AND status = 'open' AND {sla} ORDER BY due_at, id"
)
SLA = {
    "open": "$2::timestamptz IS NOT NULL",
    "overdue": "due_at <= $2::timestamptz",
    "due_soon": "due_at > $2::timestamptz AND due_at <= $2::timestamptz + interval '10 hours'",
    "on_track": "due_at > $2::timestamptz + interval '10 hours'",
}


async def test_an_rms_sla_pages_are_as_before(filled: PgPool) -> None:
    """The RM's pages under each SLA filter, page after page, are the open tasks the old
    conditions select (done and cancelled tasks among them due at the same instants), in
    (due_at, id) order."""
    await filled.execute(TIED_TASKS, NOW)
    for status, sla in SLA.items():
        want = [r["id"] for r in await filled.fetch(OLD_TASKS.format(sla=sla), "rm-t1", NOW)]
        got = await _walked_pages(
            filled,
            queries.TaskFilter(assignee="rm-t1", status=status),
            due_soon=timedelta(hours=10),
        )
        assert got == want, status
        assert got, status


def old_refusals_statement(
    selection: console_refusals.RefusalSelection,
) -> tuple[str, list[object]]:
    """The page's statement before #12's Round 15: every refusal walked newest first, joined
    to its client (the RM as it is now), filtered."""
    clauses: list[str] = []
    params: list[object] = []

    def param(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    if selection.rule is not None:
        clauses.append(f"r.rule = {param(selection.rule)}")
    if selection.branch_id is not None:
        clauses.append(f"r.branch_id = {param(selection.branch_id)}")
    if selection.rm_in is not None:
        clauses.append(f"c.rm_id = ANY({param(sorted(selection.rm_in))}::text[])")
    if selection.rm_not_in is not None:
        clauses.append(f"NOT (c.rm_id = ANY({param(sorted(selection.rm_not_in))}::text[]))")
    if not selection.any_client:
        clauses.append("c.rm_id IS NOT NULL")
    sql = (
        "SELECT r.event_id, r.rule, r.title, r.occurred_at, r.recorded_at, r.branch_id, "
        "r.client_id, r.refused_type, r.actor_id, r.actor_role, r.submitter, c.rm_id "
        "FROM fu_refusals r LEFT JOIN fu_clients c ON c.client_id = r.client_id "
        f"WHERE {' AND '.join(clauses) or 'true'} "
        f"ORDER BY r.occurred_at DESC, r.event_id DESC LIMIT {param(console_refusals.PAGE_LIMIT)}"
    )
    return sql, params


ODD_REFUSALS = """
INSERT INTO fu_clients (client_id, client_type, rm_id, branch_id, registered_at, last_event_at)
SELECT 'C-r' || n, 'individual', 'rm-r' || (n % 3), 'BR-1', now(), now()
FROM generate_series(0, 29) AS n;
INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, branch_id, client_id,
                         refused_type, actor_id, actor_role)
SELECT gen_random_uuid(), 'D-' || lpad((n % 3 + 1)::text, 2, '0'), 't',
       timestamptz '2027-01-01' + (n / 7) * interval '1 minute', now(), 'BR-' || (n % 2),
       CASE n % 11 WHEN 0 THEN NULL WHEN 1 THEN 'C-unknown-' || n WHEN 2 THEN 'C-r1'
            ELSE 'C-r' || (n % 40) END,
       'visit.arrived', 'rm-1', 'rm'
FROM generate_series(1, 2800) AS n;
INSERT INTO fu_clients (client_id, client_type, rm_id, branch_id, registered_at, last_event_at)
VALUES ('C-rare', 'individual', 'rm-rare', 'BR-1', now(), now());
INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, branch_id, client_id,
                         refused_type, actor_id, actor_role)
SELECT gen_random_uuid(), 'D-03', 't', timestamptz '2025-01-01' + n * interval '1 day', now(),
       'BR-1', 'C-rare', 'visit.arrived', 'rm-1', 'rm'
FROM generate_series(1, 3) AS n;
"""
"""Refusals newer than the filled ones, seven at each instant (ties broken by the event id),
about clients of three RMs (rm-r0..rm-r2; C-r1 has more than a page of them), about no
client, about clients followup does not know, and about C-r30..C-r39, registered nowhere;
and three old ones about the one client of rm-rare."""

SELECTIONS = {
    "one RM": console_refusals.RefusalSelection(rm_in=frozenset({"rm-r1"})),
    "one RM, a rule": console_refusals.RefusalSelection(rule="D-02", rm_in=frozenset({"rm-r1"})),
    "one RM, a branch": console_refusals.RefusalSelection(
        branch_id="BR-1", rm_in=frozenset({"rm-r1"})
    ),
    "two RMs": console_refusals.RefusalSelection(rm_in=frozenset({"rm-r0", "rm-r2"})),
    "a rare RM": console_refusals.RefusalSelection(rm_in=frozenset({"rm-rare", "rm-none"})),
    "no RM": console_refusals.RefusalSelection(rm_in=frozenset()),
    "an RM without clients": console_refusals.RefusalSelection(rm_in=frozenset({"rm-none"})),
    "both scopes": console_refusals.RefusalSelection(
        rm_in=frozenset({"rm-r0", "rm-r1"}), rm_not_in=frozenset({"rm-r0"})
    ),
    "a team, any client": console_refusals.RefusalSelection(
        rm_in=frozenset({"rm-r1"}), any_client=True
    ),
    "the default team": console_refusals.RefusalSelection(rm_not_in=frozenset({"rm-r1"})),
    "the default team, a rule": console_refusals.RefusalSelection(
        rule="D-01", rm_not_in=frozenset({"rm-r0", "rm-r1"})
    ),
    "admin": console_refusals.RefusalSelection(any_client=True),
    "admin, a rule": console_refusals.RefusalSelection(rule="D-03", any_client=True),
    "known clients": console_refusals.RefusalSelection(),
}


async def _pages_as_before(pool: PgPool) -> dict[str, list[dict[str, object]]]:
    """Each selection's page, checked against the statement of the page before #12's Round
    15 (which any rewrite of the team's read must keep)."""
    pages: dict[str, list[dict[str, object]]] = {}
    for name, selection in SELECTIONS.items():
        page = await console_refusals.refusals(pool, selection)
        sql, params = old_refusals_statement(selection)
        want = [dict(r) for r in await pool.fetch(sql, *params)]
        assert page.rows == want, name
        pages[name] = page.rows
    return pages


async def test_each_scopes_refusals_are_as_before_also_when_a_client_changes_rm(
    filled: PgPool,
) -> None:
    """Every scope's page is the old statement's, row for row, before and after a client's
    RM changes (as the client's upsert changes it, fu_clients.rm_id): a refusal shows to its
    client's current RM's team, the former RM's team no longer sees it, the default team sees
    it once its RM is no longer named, and only an admin's page has refusals about no client
    or an unknown one."""
    await filled.execute(ODD_REFUSALS)
    before = await _pages_as_before(filled)
    moved = {r["event_id"] for r in before["one RM"] if r["client_id"] == "C-r1"}
    assert moved
    assert len(before["one RM"]) == console_refusals.PAGE_LIMIT
    assert len(moved) < console_refusals.PAGE_LIMIT  # the page merges several clients
    assert {r["rm_id"] for r in before["two RMs"]} == {"rm-r0", "rm-r2"}
    assert not before["no RM"]
    assert not before["an RM without clients"]
    assert {r["rm_id"] for r in before["both scopes"]} == {"rm-r1"}
    assert before["a team, any client"] == before["one RM"]
    assert "rm-r1" not in {r["rm_id"] for r in before["the default team"]}
    assert any(r["client_id"] is None for r in before["admin"])
    assert any(str(r["client_id"]).startswith("C-unknown") for r in before["admin"])
    assert all(r["rm_id"] is not None for r in before["known clients"])

    assert len(before["two RMs"]) == console_refusals.PAGE_LIMIT
    assert len(before["a rare RM"]) == 3

    await filled.execute("UPDATE fu_clients SET rm_id = 'rm-r0' WHERE client_id = 'C-r1'")
    after = await _pages_as_before(filled)
    assert not moved & {r["event_id"] for r in after["one RM"]}
    assert moved & {r["event_id"] for r in after["two RMs"]}
    assert moved & {r["event_id"] for r in after["the default team"]}
    assert not moved & {r["event_id"] for r in after["the default team, a rule"]}


FEW_CLIENTS = """
UPDATE fu_tasks SET client_id = 'C-' || (extract(epoch FROM due_at)::bigint / 1020 % 4)
WHERE client_id <> 'C-7';
ANALYZE fu_tasks;
"""
"""Every task but client C-7's (ten) moved to one of four clients: statistics that say a
client holds a fifth of the tasks, as a young bank's, or one whose clients are few."""

CLIENT_PAGES: dict[str, queries.TaskFilter] = {
    "tasks": queries.TaskFilter(client_id="C-7"),
    "done": queries.TaskFilter(client_id="C-7", status="done"),
    "cancelled": queries.TaskFilter(client_id="C-7", status="cancelled"),
    "open": queries.TaskFilter(client_id="C-7", status="open"),
    "overdue": queries.TaskFilter(client_id="C-7", status="overdue"),
    "due before": queries.TaskFilter(client_id="C-7", due_before=NOW),
    "of a kind": queries.TaskFilter(client_id="C-7", kind="survey"),
    "of a kind, done": queries.TaskFilter(client_id="C-7", kind="survey", status="done"),
    "of an RM": queries.TaskFilter(client_id="C-7", assignee="rm-7"),
    "of a team, cancelled": queries.TaskFilter(
        client_id="C-7", assignee_in=frozenset({"rm-7", "rm-8"}), status="cancelled"
    ),
}


async def _buffers_on_generic_plan(
    pool: PgPool, statement: str, args: tuple[object, ...], mode: str = "generic"
) -> int:
    """The shared buffers the statement's generic plan (or with ``mode`` "custom", its plan
    for ``args``) touches, run with ``args`` (written as literals into ``EXECUTE``: an
    ``EXPLAIN`` of the statement itself, prepared, would plan it again with its values)."""
    assert mode in ("generic", "custom")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = force_{mode}_plan")
        types = []
        for t in (await conn.prepare(statement)).get_parameters():
            types.append(f"{t.name[1:]}[]" if t.name.startswith("_") else t.name)
        literals = []
        for value, name in zip(args, types, strict=True):
            quoted = await conn.fetchval(f"SELECT format('%L', $1::{name}::text)", value)
            literals.append(f"{quoted}::{name}")
        await conn.execute(f"PREPARE buffers_probe AS {statement}")
        try:
            values = f"({', '.join(literals)})" if literals else ""
            explained = await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE buffers_probe{values}"
            )
        finally:
            await conn.execute("DEALLOCATE buffers_probe")
    (plan,) = json.loads(explained) if isinstance(explained, str) else explained
    top = plan["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


class _Arguments:
    """A pool that records each statement with its arguments and otherwise is the pool."""

    def __init__(self, target: PgPool, seen: list[tuple[str, tuple[object, ...]]]) -> None:
        self._target = target
        self.seen = seen

    def __getattr__(self, name: str) -> object:
        return getattr(self._target, name)

    async def fetch(self, sql: str, *args: object) -> object:
        self.seen.append((sql, args))
        return await self._target.fetch(sql, *args)


@pytest.mark.parametrize("name", sorted(CLIENT_PAGES))
async def test_a_rare_clients_page_reads_the_clients_tasks_whatever_the_statistics(
    filled: PgPool, name: str
) -> None:
    """#12: a client's page, filtered or not (status, SLA, kind, RM, team), first and next,
    on its generic plan with statistics that say a client holds a fifth of the tasks, reads
    the client's tasks by fu_tasks_of_client and a few dozen buffers for a client of ten
    tasks. Before, a client's page by status walked the status's partial index in due order
    filtering on client_id (with an RM, a kind or a team: their index), and for a client
    with fewer than a page's tasks read every task of the status: thousands of buffers."""
    await filled.execute(FEW_CLIENTS)
    for after in (False, True):
        seen: list[tuple[str, tuple[object, ...]]] = []
        read = tasks(CLIENT_PAGES[name], after=after)
        await read(cast(PgPool, _Arguments(filled, seen)))
        assert seen
        for statement, args in seen:
            plan = await generic_plan(filled, statement)
            scans = [i for i, _ in _index_reads(plan) if i.startswith("fu_tasks")]
            assert scans == ["fu_tasks_of_client"], plan
            assert "Seq Scan" not in plan, plan
            buffers = await _buffers_on_generic_plan(filled, statement, args)
            assert buffers <= 60, (buffers, plan)


CLIENTS_TASKS = """
UPDATE fu_tasks SET client_id = 'C-' || (n % 2),
                    kind = CASE WHEN n % 3 = 0 THEN 'revisit' ELSE 'satisfaction_survey' END,
                    rule = CASE WHEN n % 3 = 0 THEN 'D-08' ELSE 'D-01b' END
FROM (SELECT id, row_number() OVER (ORDER BY due_at, id) AS n FROM fu_tasks) AS numbered
WHERE fu_tasks.id = numbered.id
"""


async def test_a_clients_pages_are_its_tasks_in_due_order(filled: PgPool) -> None:
    """A client's list by each status (or none, or overdue), of a kind or of an RM, page after
    page (ties in due_at included), is every task of that client so filtered in (due_at, id)
    order: the client's tasks read first (#12) is the walk it replaced."""
    await filled.execute("DELETE FROM fu_tasks")
    await filled.execute(CLOSED_TASKS, NOW)
    await filled.execute(CLIENTS_TASKS)
    for status in (None, "open", "done", "cancelled", "overdue"):
        for assignee, kind in ((None, None), ("rm-t1", None), (None, "revisit")):
            # C-1 and the kind are drawn by row number among tasks due at the same time
            # (random ids): an RM's or a kind's few overdue tasks may all fall to C-0
            await _pages_are_the_filtered_tasks(
                filled,
                queries.TaskFilter(client_id="C-1", assignee=assignee, kind=kind, status=status),
                some=status != "overdue" or (assignee, kind) == (None, None),
            )


UNREADABLE_SCOPES = {
    "everyone's": queries.TaskFilter(),
    "cancelled": queries.TaskFilter(status="cancelled"),
    "an RM's": queries.TaskFilter(assignee="rm-7"),
    "a team's, done": queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}), status="done"),
    "a kind's": queries.TaskFilter(kind="survey"),
    "an RM's, by kind, done": queries.TaskFilter(assignee="rm-7", kind="survey", status="done"),
}
"""Scopes of :data:`FILL` of more than ``READ_PAGES`` pages, whose tasks are all kind
``survey`` (no ``TaskKind``: each row is skipped as unreadable by ``queries.task_row``)."""


@pytest.mark.parametrize("name", list(UNREADABLE_SCOPES), ids=list(UNREADABLE_SCOPES))
async def test_a_scope_of_unreadable_rows_is_read_in_bounded_steps(
    filled: PgPool, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """#12: a page of a scope holding only rows it skips as unreadable reads at most
    ``READ_PAGES`` x the page's size of them and answers no rows with a next-page key just
    past them (the last row read); it read the scope to its end (Round 30: 401 statements
    for the kind's 20,000 tasks). Each statement's skipped rows are one warning naming how
    many and their task ids (Round 34; before, one warning per row: 28 here)."""
    where = UNREADABLE_SCOPES[name]
    statements: list[str] = []
    caplog.set_level(logging.WARNING, logger="branchline_shared.postgres.row_guard")
    found = await queries.list_tasks(
        cast(PgPool, Recording(filled, statements)),
        where=where,
        after=None,
        limit=7,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )
    assert found.rows == [], name
    assert found.resume_after is not None, name
    assert len(statements) <= queries.READ_PAGES, name
    due, task = found.resume_after
    assert isinstance(due, datetime), name
    # the scope's rows up to the key: exactly the ones read and skipped, then the next page
    # goes on from the row after them
    passed = await filled.fetchval(
        "SELECT count(*) FROM fu_tasks WHERE ($1::text IS NULL OR status = $1) "
        "AND ($2::text IS NULL OR assignee = $2) AND ($3::text[] IS NULL OR assignee = ANY($3)) "
        "AND ($4::text IS NULL OR kind = $4) AND ($5::text IS NULL OR client_id = $5) "
        "AND (due_at, id) <= ($6, $7)",
        where.status,
        where.assignee,
        None if where.assignee_in is None else sorted(where.assignee_in),
        where.kind,
        where.client_id,
        due,
        task,
    )
    assert passed == queries.READ_PAGES * 7, name
    warnings = [r.__dict__ for r in caplog.records if r.name.endswith("row_guard")]
    assert len(warnings) == len(statements), name
    assert sum(w["skipped"] for w in warnings) == passed, name
    assert all(w["query"] == "followups.list" for w in warnings), name
    assert all(len(w["ids"]) == min(w["skipped"], 20) for w in warnings), name
    assert warnings[-1]["ids"][-1] == str(task), name


READABLE_EVERY = {"every 37th": 37, "every 7th": 7, "every 2nd": 2, "none": 0}
"""Which of :data:`FILL`'s tasks are made readable (by their place in due order): long runs
of unreadable rows between readable ones (pages empty but for a cursor), short ones, none."""
WALKED_SCOPES = {
    "everyone's, cancelled": queries.TaskFilter(status="cancelled"),
    "an RM's": queries.TaskFilter(assignee="rm-7"),
    "a team's, done": queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}), status="done"),
    "a client's": queries.TaskFilter(client_id="C-7"),
}


@pytest.mark.parametrize("every", list(READABLE_EVERY.values()), ids=list(READABLE_EVERY))
async def test_a_walk_past_unreadable_rows_is_exactly_the_readable_tasks_in_order(
    filled: PgPool, every: int
) -> None:
    """#12: with a scope's readable tasks among rows skipped as unreadable (an unknown kind,
    an unknown rule and status, a due_at of ``infinity``), the pages walked from each page's
    key (a full page's last task, or a short page's ``resume_after``) are exactly the readable
    tasks in (due_at, id) order, each once."""
    position = "(extract(epoch FROM due_at - timestamptz '2026-01-01') / 1020)::int"
    if every:
        await filled.execute(
            "UPDATE fu_tasks SET kind = 'satisfaction_survey', rule = 'D-01b' "
            f"WHERE {position} % $1 = 0",
            every,
        )
    # other unreadable rows: a known kind with an unknown status, one due at infinity
    await filled.execute(
        f"UPDATE fu_tasks SET kind = 'revisit', rule = 'D-99' WHERE {position} % 11 = 5"
    )
    await filled.execute(
        "UPDATE fu_tasks SET kind = 'revisit', rule = 'D-08', due_at = 'infinity' "
        f"WHERE id IN (SELECT id FROM fu_tasks WHERE {position} % 13 = 6 LIMIT 40)"
    )
    walked = 0
    for name, where in WALKED_SCOPES.items():
        want = [
            r["id"]
            for r in await filled.fetch(
                "SELECT id FROM fu_tasks WHERE kind = 'satisfaction_survey' "
                "AND ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR assignee = $2) "
                "AND ($3::text[] IS NULL OR assignee = ANY($3)) "
                "AND ($4::text IS NULL OR client_id = $4) ORDER BY due_at, id",
                where.status,
                where.assignee,
                None if where.assignee_in is None else sorted(where.assignee_in),
                where.client_id,
            )
        ]
        got = await _walked_pages(filled, where)
        assert got == want, name
        walked += len(got)
    assert bool(walked) == bool(every)  # a scope may hold none (rm-7's tasks are odd ones)


RARE_KIND = """
UPDATE fu_tasks SET kind = CASE WHEN n % 199 = 0 THEN 'revisit' ELSE 'satisfaction_survey' END,
                    rule = CASE WHEN n % 199 = 0 THEN 'D-08' ELSE 'D-01b' END
FROM (SELECT id, row_number() OVER (ORDER BY due_at, id) AS n FROM fu_tasks) AS numbered
WHERE fu_tasks.id = numbered.id;
ANALYZE fu_tasks;
"""
""":data:`FILL`'s tasks made readable, one in 199 a revisit (spread over the RMs), the rest
satisfaction surveys, as the statistics then say."""
RARE_KIND_PAGES = {
    "an RM's": queries.TaskFilter(assignee="rm-7", kind="revisit"),
    "an RM's, done": queries.TaskFilter(assignee="rm-7", kind="revisit", status="done"),
    "an RM's, open": queries.TaskFilter(assignee="rm-7", kind="revisit", status="open"),
    "a team's, done": queries.TaskFilter(
        assignee_in=frozenset({"rm-7", "rm-8"}), kind="revisit", status="done"
    ),
    "an RM's, overdue": queries.TaskFilter(assignee="rm-7", kind="revisit", status="overdue"),
    "an RM's, due soon": queries.TaskFilter(assignee="rm-7", kind="revisit", status="due_soon"),
    "a team's, on track": queries.TaskFilter(
        assignee_in=frozenset({"rm-7", "rm-8"}), kind="revisit", status="on_track"
    ),
}


@pytest.mark.parametrize("name", list(RARE_KIND_PAGES), ids=list(RARE_KIND_PAGES))
async def test_a_rare_kinds_page_of_an_rm_reads_on_its_generic_plan_what_its_custom_plan_does(
    filled: PgPool, name: str
) -> None:
    """#12 (Round 31's left item): an RM's (or a team's) page of a rare kind, on the generic
    plan PostgreSQL uses for a statement run more than five times, reads no more buffers than
    the plan made for its values, by the kind's index (followup 019) filtering the owner.
    With the kind a parameter, the generic plan took any kind for half the tasks and walked
    the owner's index (assignee, status, due_at, id) filtering on kind: the RM's whole history
    of the status for a rare kind (profile: 1,963 buffers against the custom plan's 493)."""
    await filled.execute(RARE_KIND)
    for after in (False, True):
        seen: list[tuple[str, tuple[object, ...]]] = []
        read = tasks(RARE_KIND_PAGES[name], after=after)
        await read(cast(PgPool, _Arguments(filled, seen)))
        assert seen
        for statement, args in seen:
            plan = await generic_plan(filled, statement)
            scans = {i for i, _ in _index_reads(plan) if i.startswith("fu_tasks")}
            assert scans == {"fu_tasks_kind_by_status"}, plan
            generic = await _buffers_on_generic_plan(filled, statement, args)
            custom = await _buffers_on_generic_plan(filled, statement, args, mode="custom")
            assert generic <= custom, (generic, custom, plan)


KIND_PAGES = {
    "an RM's": lambda kind: queries.TaskFilter(assignee="rm-7", kind=kind),
    "an RM's, done": lambda kind: queries.TaskFilter(assignee="rm-7", kind=kind, status="done"),
    "a team's": lambda kind: queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8"}), kind=kind),
    "the kind's": lambda kind: queries.TaskFilter(kind=kind),
    "a client's": lambda kind: queries.TaskFilter(client_id="C-7", kind=kind),
}


async def test_the_task_pages_of_every_kind_use_two_statements_a_kind(filled: PgPool) -> None:
    """#12: the kind's word is written only into an owner's page (an RM's, a team's), whose
    first and next pages and statuses are one statement; every other page binds the kind.
    Before, each kind had its own statement for each shape and its next page (8 a kind, 160
    for 20 kinds: more than asyncpg's cache of 100 statements, re-prepared in turn)."""
    kinds = [kind.value for kind in TaskKind]
    seen: list[tuple[str, tuple[object, ...]]] = []
    for kind in kinds:
        for page in KIND_PAGES.values():
            for after in (False, True):
                await tasks(page(kind), after=after)(cast(PgPool, _Arguments(filled, seen)))
    statements = {statement for statement, _ in seen}
    assert len(statements) <= 2 * len(kinds) + 4, len(statements)
    for name in ("an RM's", "a team's"):  # one statement, first and next a range of the walk
        owner = {
            s
            for s, _ in seen
            if "'satisfaction_survey'" in s and ("team" in s) == (name == "a team's")
        }
        assert len(owner) == 1, owner
        plan = await generic_plan(filled, owner.pop())
        reads = [(i, d) for i, d in _index_reads(plan) if i.startswith("fu_tasks")]
        assert reads, plan
        for _, details in reads:
            assert any(d.startswith("Index Cond") and "due_at" in d for d in details), plan


OWNER_PAGES = {
    "an RM's": lambda kind, status: queries.TaskFilter(assignee="rm-7", kind=kind, status=status),
    "a team's": lambda kind, status: queries.TaskFilter(
        assignee_in=frozenset({"rm-7", "rm-8"}), kind=kind, status=status
    ),
}
OWNER_STATUSES = (None, "open", "done", "overdue", "due_soon", "on_track")


async def test_an_owners_kind_pages_under_every_sla_filter_use_four_statements_a_kind(
    filled: PgPool,
) -> None:
    """#12 (Round 33's left item): an owner's (an RM's, a team's) kind page under any SLA
    filter (overdue, due soon, on track), first and next, is the kind's one SLA statement of
    that owner: the SLA filter is the walk's range (its start the first keyset, its end a
    bound parameter), not a text of its own; with no SLA filter (any status) it is Round 33's
    one statement: four a kind. The kind's and a client's pages under an SLA
    filter bind the kind: a few statements for every kind. Before, each SLA filter was its
    own text on each kind's owner pages: 8 statements a kind, 160 for 20 kinds."""
    kinds = [kind.value for kind in TaskKind]
    seen: list[tuple[str, tuple[object, ...]]] = []
    recording = cast(PgPool, _Arguments(filled, seen))
    for kind in kinds:
        for status in OWNER_STATUSES:
            for page in OWNER_PAGES.values():
                for after in (False, True):
                    await tasks(page(kind, status), after=after)(recording)
        for sla in ("overdue", "due_soon", "on_track"):
            for where in (
                queries.TaskFilter(kind=kind, status=sla),
                queries.TaskFilter(client_id="C-7", kind=kind, status=sla),
            ):
                for after in (False, True):
                    await tasks(where, after=after)(recording)
    statements = {statement for statement, _ in seen}
    for kind in kinds:
        assert len({s for s in statements if f"'{kind}'" in s}) == 4, kind
    bound = {s for s in statements if not any(f"'{kind}'" in s for kind in kinds)}
    assert len(bound) <= 12, len(bound)  # 3 SLA filters x (the kind's, a client's) x first, next


async def test_an_owners_kind_pages_under_each_sla_filter_are_one_statement_and_its_tasks(
    filled: PgPool,
) -> None:
    """#12: an RM's and a team's kind pages under each SLA filter, page after page, are the
    open tasks of the kind the SLA conditions select, in (due_at, id) order, all read by one
    statement per owner (the filter the walk's range); a cursor from before the filter's
    start (a page kept open across an hour) starts at the filter's start. Before, each SLA
    filter was a statement of its own."""
    await filled.execute(TIED_TASKS, NOW)
    await filled.execute(
        "UPDATE fu_tasks SET kind = 'revisit', rule = 'D-08' "
        "WHERE assignee LIKE 'rm-t%' AND get_byte(uuid_send(id), 0) < 64"
    )
    for owner, scope in (("rm-t1", ["rm-t1"]), ("team", ["rm-t1", "rm-t2"])):
        seen: list[tuple[str, tuple[object, ...]]] = []
        recording = cast(PgPool, _Arguments(filled, seen))
        for status, sla in SLA.items():
            if status == "overdue":
                del seen[:]  # the SLA filters' pages, after the open page's
            want = [
                r["id"]
                for r in await filled.fetch(
                    "SELECT id FROM fu_tasks WHERE assignee = ANY($1::text[]) "
                    f"AND kind = 'satisfaction_survey' AND status = 'open' AND {sla} "
                    "ORDER BY due_at, id",
                    scope,
                    NOW,
                )
            ]
            where = (
                queries.TaskFilter(assignee="rm-t1", kind="satisfaction_survey", status=status)
                if owner == "rm-t1"
                else queries.TaskFilter(
                    assignee_in=frozenset(scope), kind="satisfaction_survey", status=status
                )
            )
            got = await _walked_pages(recording, where, due_soon=timedelta(hours=10))
            assert got == want, (owner, status)
            assert got, (owner, status)
            early = await queries.list_tasks(
                recording,
                where=where,
                after=(NOW - timedelta(days=60), uuid.UUID(int=0)),
                limit=7,
                now=NOW,
                due_soon_window=timedelta(hours=10),
            )
            assert [row["id"] for row in early.rows] == want[:7], (owner, status)
        assert len({statement for statement, _ in seen}) == 1, owner  # overdue .. on track

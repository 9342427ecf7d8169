"""The console's work list a page at a time (#12): "Next page" and "First page" links that
keep the filters and carry the keyset cursor of ``GET /v1/followups``; a page past rows the
read could not use says so and offers the next page; a forged cursor is a 400 page, and no
page holds a task outside the caller's scope."""

from __future__ import annotations

import base64
import html
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from branchline_followup.entrypoints.task_cursor import encode_cursor
from branchline_shared.http.auth import Role
from tests.integration.followup.harness import ApiClients

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

START = datetime(2026, 3, 1, tzinfo=UTC)
TASK_ID = re.compile(r'data-task-id="([^"]+)"')
NEXT = re.compile(r'id="work-list-next" rel="next" href="([^"]+)"')
FIRST = re.compile(r'id="work-list-first" href="([^"]+)"')
FRAGMENT = {"hx-request": "true", "hx-target": "work-list"}


async def add_tasks(
    db: asyncpg.Connection[Any],
    count: int,
    *,
    assignee: str,
    kind: str = "revisit",
    rule: str = "D-08",
    client: str = "C-1",
    offset: int = 0,
) -> None:
    """``count`` open tasks, one every 7 minutes from ``START`` + ``offset`` minutes (a kind
    that is not a task kind, ``survey``, makes rows the read skips as unreadable)."""
    await db.execute(
        "INSERT INTO fu_read.fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, "
        "opened_at, due_at, deadline_profile, source_event_id, status) "
        "SELECT gen_random_uuid(), $1, $2, $3, 'BR-1', $4, 's', $5::timestamptz, "
        "$5::timestamptz + (n * 7 + $6) * interval '1 minute', 'calendar', gen_random_uuid(), "
        "'open' FROM generate_series(1, $7) AS n",
        kind,
        rule,
        client,
        assignee,
        START,
        offset,
        count,
    )


async def in_due_order(db: asyncpg.Connection[Any], where: str, *args: object) -> list[str]:
    rows = await db.fetch(
        f"SELECT id FROM fu_read.fu_tasks WHERE status = 'open' AND {where} ORDER BY due_at, id",
        *args,
    )
    return [str(r["id"]) for r in rows]


async def walk(
    client: httpx.AsyncClient, first: str, *, headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    """The pages from ``first`` on, following each "Next page" link to the last."""
    pages: list[httpx.Response] = []
    url: str | None = first
    while url is not None:
        page = await client.get(url, headers=headers)
        assert page.status_code == 200, page.text
        pages.append(page)
        assert len(pages) <= 20, "the pages do not end"
        found = NEXT.search(page.text)
        url = html.unescape(found.group(1)) if found else None
    return pages


def shown(page: httpx.Response) -> list[str]:
    return TASK_ID.findall(page.text)


async def test_an_rm_walks_two_pages_and_sees_every_open_task_once_in_deadline_order(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 150, assignee="rm-7")
    await add_tasks(db, 40, assignee="rm-8", offset=3)  # another RM's, interleaved
    rm = stack.console_as(Role.RM, "rm-7")
    pages = await walk(rm, "/console/")
    assert [len(shown(p)) for p in pages] == [100, 50]
    assert "100 shown, more on the next page" in pages[0].text
    assert "(100)" not in pages[0].text
    assert FIRST.search(pages[0].text) is None  # the first page links to no first page
    assert "50 shown on this page" in pages[1].text
    assert NEXT.search(pages[1].text) is None
    back = FIRST.search(pages[1].text)
    assert back is not None
    assert parse_qs(urlsplit(html.unescape(back.group(1))).query) == {"status": ["open"]}
    seen = [t for p in pages for t in shown(p)]
    assert seen == await in_due_order(db, "assignee = 'rm-7'")


async def test_the_filters_are_kept_across_pages_also_for_htmx_fragments(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 130, assignee="rm-7", client="C-2")
    await add_tasks(db, 60, assignee="rm-7", client="C-2", kind="complaint_ack", rule="D-07")
    await add_tasks(db, 60, assignee="rm-7", client="C-3", offset=2)
    await add_tasks(db, 60, assignee="rm-8", client="C-2", offset=4)
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    first = "/console/?status=open&kind=revisit&client_id=C-2&assignee=rm-7"
    pages = await walk(supervisor, first, headers=FRAGMENT)
    assert [len(shown(p)) for p in pages] == [100, 30]
    assert all("<html" not in p.text for p in pages)  # the work list's fragment, each page
    link = NEXT.search(pages[0].text)
    assert link is not None
    query = parse_qs(urlsplit(html.unescape(link.group(1))).query)
    assert {k: v for k, v in query.items() if k != "cursor"} == {
        "status": ["open"],
        "kind": ["revisit"],
        "client_id": ["C-2"],
        "assignee": ["rm-7"],
    }
    seen = [t for p in pages for t in shown(p)]
    assert seen == await in_due_order(
        db, "assignee = 'rm-7' AND kind = 'revisit' AND client_id = 'C-2'"
    )


async def test_a_page_past_unreadable_rows_says_so_and_offers_the_next_page(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    """Round 31's unreadable rows (a kind that is no task kind) before the RM's 3 readable
    tasks: more than a read takes (4 x a page) before it stops with a key past them."""
    await add_tasks(db, 450, assignee="rm-7", kind="survey", rule="D-07")
    await add_tasks(db, 3, assignee="rm-7", offset=450 * 7)
    rm = stack.console_as(Role.RM, "rm-7")
    pages = await walk(rm, "/console/")
    assert len(pages) >= 2
    assert shown(pages[0]) == []
    assert "Some tasks could not be shown on this page" in pages[0].text
    assert "Nothing to show with these filters." not in pages[0].text
    assert NEXT.search(pages[0].text) is not None
    seen = [t for p in pages for t in shown(p)]
    assert seen == await in_due_order(db, "assignee = 'rm-7' AND kind = 'revisit'")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED = {
    "not base64": "%%%not-a-cursor",
    "not json": _b64(b"not json"),
    "cut short": encode_cursor(START, uuid.UUID(int=1))[:6],
    "a naive instant": _b64(b'["2026-03-01T00:00:00","00000000-0000-0000-0000-000000000001"]'),
    "an unknown word": encode_cursor("tomorrow", uuid.UUID(int=1)),
    "a number for the task id": _b64(b'["2026-03-01T00:00:00+00:00",7]'),
}


@pytest.mark.parametrize("cursor", list(FORGED.values()), ids=list(FORGED))
async def test_a_forged_cursor_is_a_400_page(stack: ApiClients, cursor: str) -> None:
    rm = stack.console_as(Role.RM, "rm-7")
    for headers in (None, FRAGMENT):
        page = await rm.get("/console/", params={"cursor": cursor}, headers=headers)
        assert page.status_code == 400, page.text
        assert "the cursor is malformed or altered" in page.text
        assert 'href="/console/"' in page.text


async def test_a_supervisors_next_pages_hold_no_task_outside_their_team(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    """sup-1's team is rm-7 and rm-8 (the fixture's settings); rm-9's tasks are interleaved,
    and a cursor made from an rm-9 task's key moves within the team's tasks, no further."""
    await add_tasks(db, 70, assignee="rm-7")
    await add_tasks(db, 60, assignee="rm-8", offset=2)
    await add_tasks(db, 150, assignee="rm-9", offset=4)
    team = await in_due_order(db, "assignee IN ('rm-7', 'rm-8')")
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    pages = await walk(supervisor, "/console/")
    assert [len(shown(p)) for p in pages] == [100, 30]
    assert [t for p in pages for t in shown(p)] == team
    outsider = await db.fetchrow(
        "SELECT id, due_at FROM fu_read.fu_tasks WHERE assignee = 'rm-9' ORDER BY due_at, id "
        "OFFSET 10 LIMIT 1"
    )
    forged = encode_cursor(outsider["due_at"], outsider["id"])
    page = await supervisor.get("/console/", params={"cursor": forged})
    assert page.status_code == 200, page.text
    after = [
        t
        for t in team
        if (await db.fetchval("SELECT due_at FROM fu_read.fu_tasks WHERE id = $1::uuid", t))
        > outsider["due_at"]
    ]
    assert shown(page) == after[:100]

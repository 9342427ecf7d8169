"""``GET /v1/followups`` past a scope of unreadable rows, over HTTP (#12): a page reads at most
4 x (``limit`` + 1) stored tasks (docs/api.md), so past more unreadable rows than that the
first page is empty with a ``next_cursor``; the walk goes on to the readable tasks, in
deadline order, and only a null ``next_cursor`` ends it. Each page's stored rows are counted
where the adapter decodes them (``queries.decode_rows`` of ``followups.list``)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from branchline_followup.adapters import queries
from branchline_shared.http.auth import Role
from tests.integration.followup.harness import ApiClients
from tests.integration.followup.test_console_work_pages import add_tasks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LIMIT = 10
CAP = 4 * (LIMIT + 1)
"""The API's documented bound (docs/api.md, ``list_followups``): 4 x (limit + 1) rows a page
when they are all skipped; a page that finds some readable rows reads less than one more
read's worth past it (each read asks for the rows the page still lacks)."""
UNREADABLE = 3 * CAP + 7
"""More than three pages' cap of rows the read skips (``queries.task_row``), before the
scope's readable tasks, twice over: of a kind that is no task kind (``survey``) and of a task
kind with a rule that is none (``D-99``), interleaved, so a page by kind meets them too."""
READABLE = 2 * LIMIT + 3


class RowsRead:
    """The stored rows each task-list read decodes (kept and skipped alike), by call."""

    def __init__(self) -> None:
        self.reads: list[int] = []

    def hook(self, monkeypatch: pytest.MonkeyPatch) -> None:
        decode = queries.decode_rows

        def counted(raw: Any, row: Any, *, query: str, **named: Any) -> Any:
            if query == "followups.list":
                self.reads.append(len(raw))
            return decode(raw, row, query=query, **named)

        monkeypatch.setattr(queries, "decode_rows", counted)

    def taken(self) -> int:
        total = sum(self.reads)
        self.reads.clear()
        return total


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> RowsRead:
    counter = RowsRead()
    counter.hook(monkeypatch)
    return counter


SCOPES: dict[str, tuple[Role, str, dict[str, str], str]] = {
    # caller, their id, the query's filters, the rows the page reads (SQL over fu_tasks)
    "an RM's own": (Role.RM, "rm-7", {}, "assignee = 'rm-7'"),
    "an RM's, open": (Role.RM, "rm-7", {"status": "open"}, "assignee = 'rm-7'"),
    "a supervisor's team": (Role.SUPERVISOR, "sup-1", {}, "assignee IN ('rm-7', 'rm-8')"),
    "an admin's, by kind": (Role.ADMIN, "admin-1", {"kind": "revisit"}, "kind = 'revisit'"),
    "an admin's, a client's": (Role.ADMIN, "admin-1", {"client_id": "C-1"}, "client_id = 'C-1'"),
}


async def _readable_in_order(db: asyncpg.Connection[Any], scope: str) -> list[str]:
    rows = await db.fetch(
        "SELECT id FROM fu_read.fu_tasks WHERE kind = 'revisit' AND rule = 'D-08' "
        f"AND {scope} ORDER BY due_at, id"
    )
    return [str(r["id"]) for r in rows]


async def _walk(
    client: httpx.AsyncClient, filters: dict[str, str], rows_read: RowsRead
) -> list[tuple[list[str], str | None, int]]:
    """Each page's task ids, its next_cursor and the stored rows its read took."""
    pages: list[tuple[list[str], str | None, int]] = []
    cursor: str | None = None
    rows_read.taken()
    while True:
        params: dict[str, str | int] = {"limit": LIMIT, **filters}
        if cursor is not None:
            params["cursor"] = cursor
        page = await client.get("/v1/followups", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        cursor = body["next_cursor"]
        pages.append(([t["id"] for t in body["items"]], cursor, rows_read.taken()))
        assert len(pages) <= 20, "the pages do not end"
        if cursor is None:
            return pages


@pytest.mark.parametrize("scope", list(SCOPES), ids=list(SCOPES))
async def test_a_walk_past_more_unreadable_rows_than_a_page_reads(
    stack: ApiClients, db: asyncpg.Connection[Any], rows_read: RowsRead, scope: str
) -> None:
    role, sub, filters, stored = SCOPES[scope]
    await add_tasks(db, UNREADABLE, assignee="rm-7", kind="survey", rule="D-07")
    await add_tasks(db, UNREADABLE, assignee="rm-7", rule="D-99", offset=3)
    await add_tasks(db, UNREADABLE // 3, assignee="rm-8", kind="survey", rule="D-07", offset=1)
    first_readable = (UNREADABLE + 1) * 7
    await add_tasks(db, READABLE, assignee="rm-7", offset=first_readable)
    await add_tasks(db, 5, assignee="rm-8", offset=first_readable + 2)
    await add_tasks(db, 5, assignee="rm-9", client="C-2", offset=first_readable + 4)
    expected = await _readable_in_order(db, stored)
    assert len(expected) >= READABLE

    pages = await _walk(stack.as_(role, sub), filters, rows_read)

    first_items, first_cursor, first_read = pages[0]
    assert first_items == [], scope  # only unreadable rows within the first page's reach
    assert first_cursor is not None, scope  # ...and the list goes on past them
    assert first_read == CAP, scope
    for items, _cursor, read in pages:
        assert read < CAP + LIMIT + 1, (scope, [(len(i), r) for i, _, r in pages])
        assert len(items) <= LIMIT
    assert [t for items, _, _ in pages for t in items] == expected, scope
    assert pages[-1][1] is None
    # the walk read each stored row of the scope about once: no page re-read the skipped rows
    stored_rows = await db.fetchval(f"SELECT count(*) FROM fu_read.fu_tasks WHERE {stored}")
    assert sum(read for _, _, read in pages) <= stored_rows + len(pages) * (LIMIT + 1), scope

"""The console's work list forms keep the RM's page (#12): completing or reassigning a task
from page 2 shows page 2 again (its filters and cursor ride in the forms' hidden fields),
for htmx and for a plain form post with its redirect; a forged cursor in a form is the 400
page and nothing is recorded; to htmx, a bad cursor's 400 is the work list's fragment with
the headers that put it in place of the list, and the page's config and script swap a 4xx
only when it names its target (HX-Retarget)."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import ApiClients, History, now_utc, produce_events
from tests.integration.followup.test_console_work_pages import FORGED, FRAGMENT, NEXT, add_tasks
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FORM_CURSOR = re.compile(r'name="f_cursor" value="([^"]*)"')
FIRST = re.compile(r'id="work-list-first" href="([^"]+)"')
HTMX_CONFIG = re.compile(r"<meta name=\"htmx-config\" content='([^']+)'>")
SCRIPT = re.compile(r'<script src="([^"]+)" defer></script>')


async def open_revisits(
    settings: BranchlineSettings, stack: ApiClients, clients: list[str]
) -> dict[str, str]:
    """A real revisit task (through the events) of rm-7 for each client: due now-ish, after
    the 100 earlier rows :func:`add_tasks` writes, so on the work list's page 2."""
    history = History()
    start = now_utc() - timedelta(hours=3)
    for n, client in enumerate(clients):
        history.registered(client, start + timedelta(minutes=n))
        history.visit(client, f"V-{client}", start + timedelta(minutes=n, seconds=30))
    await produce_events(settings, history.events)
    rm = stack.as_(Role.RM, "rm-7")

    async def tasks() -> dict[str, str] | None:
        found: dict[str, str] = {}
        for client in clients:
            page = (await rm.get("/v1/followups", params={"client_id": client})).json()
            if not page["items"]:
                return None
            found[client] = page["items"][0]["id"]
        return found

    made = await eventually(tasks)
    assert made is not None
    return made


async def second_page(console: httpx.AsyncClient, first: str) -> tuple[str, httpx.Response]:
    page1 = await console.get(first)
    assert page1.status_code == 200, page1.text
    link = NEXT.search(page1.text)
    assert link is not None, page1.text
    url = html.unescape(link.group(1))
    page2 = await console.get(url)
    assert page2.status_code == 200, page2.text
    return parse_qs(urlsplit(url).query)["cursor"][0], page2


def form_cursors(page: httpx.Response) -> set[str]:
    return {html.unescape(c) for c in FORM_CURSOR.findall(page.text)}


async def test_completing_or_reassigning_on_page_two_shows_page_two_again(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 100, assignee="rm-7")  # page 1: due long before the real tasks
    tasks = await open_revisits(settings, stack, ["C-P1", "C-P2", "C-P3", "C-P4"])
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    rm = stack.console_as(Role.RM, "rm-7")
    filters = {"f_status": "open", "f_kind": "", "f_client_id": "", "f_assignee": "rm-7"}

    # every form on page 2 carries page 2's cursor
    cursor, page2 = await second_page(supervisor, "/console/?assignee=rm-7")
    assert all(t in page2.text for t in tasks.values())
    assert form_cursors(page2) == {cursor}

    # htmx: the answer is page 2's fragment, the task gone, the same cursor in its forms
    done = await rm.post(
        f"/console/tasks/{tasks['C-P1']}/complete",
        data={"outcome": "contacted", "f_status": "open", "f_cursor": cursor},
        headers=FRAGMENT,
    )
    assert done.status_code == 200, done.text
    assert "Task completed." in done.text
    assert tasks["C-P1"] not in done.text
    assert tasks["C-P2"] in done.text
    assert FIRST.search(done.text) is not None  # page 2 links back to the first
    assert form_cursors(done) == {cursor}

    moved = await supervisor.post(
        f"/console/tasks/{tasks['C-P2']}/reassign",
        data={"assignee": "rm-8", **filters, "f_cursor": cursor},
        headers=FRAGMENT,
    )
    assert moved.status_code == 200, moved.text
    assert "Task given to rm-8." in moved.text
    assert tasks["C-P2"] not in moved.text
    assert tasks["C-P3"] in moved.text
    assert form_cursors(moved) == {cursor}

    # a plain form post: redirected to page 2 (filters and cursor), which shows the notice
    plain = await rm.post(
        f"/console/tasks/{tasks['C-P3']}/complete",
        data={"outcome": "contacted", "f_status": "open", "f_cursor": cursor},
    )
    assert plain.status_code in (302, 303), plain.text
    query = parse_qs(urlsplit(plain.headers["location"]).query)
    assert query == {"status": ["open"], "cursor": [cursor], "done": ["1"]}
    back = await rm.get(plain.headers["location"])
    assert back.status_code == 200, back.text
    assert "Task completed." in back.text
    assert tasks["C-P3"] not in back.text
    assert tasks["C-P4"] in back.text
    assert form_cursors(back) == {cursor}

    given = await supervisor.post(
        f"/console/tasks/{tasks['C-P4']}/reassign",
        data={"assignee": "rm-8", **filters, "f_cursor": cursor},
    )
    assert given.status_code in (302, 303), given.text
    query = parse_qs(urlsplit(given.headers["location"]).query)
    assert query == {
        "status": ["open"],
        "assignee": ["rm-7"],
        "cursor": [cursor],
        "given": ["rm-8"],
    }
    back = await supervisor.get(given.headers["location"])
    assert back.status_code == 200, back.text
    assert "Task given to rm-8." in back.text
    assert tasks["C-P4"] not in back.text
    assert form_cursors(back) == {cursor}
    rows = await db.fetch(
        "SELECT client_id, status, assignee FROM fu_read.fu_tasks WHERE id = ANY($1::uuid[]) "
        "ORDER BY client_id",
        list(tasks.values()),
    )
    assert [tuple(r) for r in rows] == [
        ("C-P1", "done", "rm-7"),
        ("C-P2", "open", "rm-8"),
        ("C-P3", "done", "rm-7"),
        ("C-P4", "open", "rm-8"),
    ]


@pytest.mark.parametrize("cursor", list(FORGED.values()), ids=list(FORGED))
async def test_a_forged_cursor_in_a_form_is_the_400_page_and_nothing_is_recorded(
    settings: BranchlineSettings,
    stack: ApiClients,
    db: asyncpg.Connection[Any],
    cursor: str,
) -> None:
    tasks = await open_revisits(settings, stack, ["C-F1"])
    before = await db.fetchval("SELECT count(*) FROM es_events")
    rm = stack.console_as(Role.RM, "rm-7")
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    for headers in (None, FRAGMENT):
        done = await rm.post(
            f"/console/tasks/{tasks['C-F1']}/complete",
            data={"outcome": "contacted", "f_cursor": cursor},
            headers=headers,
        )
        moved = await supervisor.post(
            f"/console/tasks/{tasks['C-F1']}/reassign",
            data={"assignee": "rm-8", "f_cursor": cursor},
            headers=headers,
        )
        for answer in (done, moved):
            assert answer.status_code == 400, answer.text
            assert "the cursor is malformed or altered" in answer.text
    assert await db.fetchval("SELECT count(*) FROM es_events") == before
    task = await db.fetchrow(
        "SELECT status, assignee FROM fu_read.fu_tasks WHERE id = $1::uuid", tasks["C-F1"]
    )
    assert (task["status"], task["assignee"]) == ("open", "rm-7")


async def test_to_htmx_a_bad_cursor_is_a_400_naming_its_target_the_console_swaps_in(
    stack: ApiClients,
) -> None:
    rm = stack.console_as(Role.RM, "rm-7")
    answer = await rm.get("/console/", params={"cursor": FORGED["not json"]}, headers=FRAGMENT)
    assert answer.status_code == 400, answer.text
    assert answer.headers.get("hx-retarget") == "#work-list"
    assert answer.headers.get("hx-reswap") == "outerHTML"
    assert "<html" not in answer.text
    assert answer.text.lstrip().startswith('<section id="work-list"')
    assert 'role="alert"' in answer.text
    # a plain request keeps the whole 400 page, without htmx's headers
    plain = await rm.get("/console/", params={"cursor": FORGED["not json"]})
    assert plain.status_code == 400, plain.text
    assert "<html" in plain.text
    assert "hx-retarget" not in plain.headers
    # the console's htmx config swaps no 4xx or 5xx (htmx 2's default); the console's own
    # script swaps a 4xx only when it names its target (HX-Retarget), as this one does
    page = await rm.get("/console/")
    found = HTMX_CONFIG.search(page.text)
    assert found is not None
    handling = json.loads(html.unescape(found.group(1)))["responseHandling"]
    first_match = {
        status: next(h for h in handling if re.fullmatch(h["code"], status))
        for status in ("200", "204", "400", "403", "404", "422", "500")
    }
    assert {s: h["swap"] for s, h in first_match.items()} == {
        "200": True,
        "204": False,
        "400": False,
        "403": False,
        "404": False,
        "422": False,
        "500": False,
    }
    scripts = SCRIPT.findall(page.text)
    assert scripts == ["/console/static/htmx.min.js", "/console/static/console.js"]
    served = await rm.get(scripts[1])
    assert served.status_code == 200, served.text
    assert "javascript" in served.headers["content-type"]
    rule = served.text
    assert '"htmx:beforeSwap"' in rule
    assert 'getResponseHeader("HX-Retarget")' in rule
    assert "shouldSwap = true" in rule

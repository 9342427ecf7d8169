"""The console's work list never leaves the RM stranded or uninformed (#12): a page keeps the
cursors of the pages the RM came through (``back``, each one checked as the cursor is), so it
links to the previous page; a later page left with no task shows the page before it (the
nearest with tasks, else the first), and to htmx replaces the address; a forged or overlong
trail is the 400 page and nothing is recorded; the console's own error fragment says so in a
header (``console.js`` swaps a 4xx only with it); every page holds the fixed aria-live region
where a failed request (5xx, no answer) is said, in the page's language."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from branchline_followup.entrypoints.task_cursor import encode_cursor
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import ApiClients
from tests.integration.followup.test_console_forms_keep_the_page import open_revisits
from tests.integration.followup.test_console_work_pages import (
    FORGED,
    FRAGMENT,
    NEXT,
    START,
    add_tasks,
    shown,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PREVIOUS = re.compile(r'id="work-list-previous" rel="prev" href="([^"]+)"')
FORM_BACK = re.compile(r'name="f_back" value="([^"]*)"')
FAILURE = re.compile(r'<div id="console-failure"([^>]*)>')


def link(pattern: re.Pattern[str], page: httpx.Response) -> str | None:
    found = pattern.search(page.text)
    return html.unescape(found.group(1)) if found else None


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def get(client: httpx.AsyncClient, url: str, **kw: Any) -> httpx.Response:
    page = await client.get(url, **kw)
    assert page.status_code == 200, page.text
    return page


async def done(db: asyncpg.Connection[Any], ids: list[str]) -> None:
    await db.execute("UPDATE fu_read.fu_tasks SET status = 'done' WHERE id = ANY($1::uuid[])", ids)


async def one_redirect(client: httpx.AsyncClient, answer: httpx.Response) -> httpx.Response:
    """The page a plain post's one redirect leads to: shown there, not redirected again."""
    assert answer.status_code == 303, answer.text
    landed = await client.get(answer.headers["location"])
    assert landed.status_code == 200, landed.text
    return landed


async def page_two_of_only(
    settings: BranchlineSettings,
    stack: ApiClients,
    db: asyncpg.Connection[Any],
    clients: list[str],
) -> tuple[httpx.AsyncClient, dict[str, str], httpx.Response, str, str]:
    """RM rm-7's console whose page 2 holds only ``clients``' revisits (page 1 is 100 tasks due
    long before them; the other tasks their events made are done elsewhere): the RM's client,
    the revisits by client, page 1, page 2's address and its cursor."""
    await add_tasks(db, 100, assignee="rm-7")
    tasks = await open_revisits(settings, stack, clients)
    rm = stack.console_as(Role.RM, "rm-7")
    page1 = await get(rm, "/console/")
    to2 = link(NEXT, page1)
    assert to2 is not None
    on_page2 = shown(await get(rm, to2))
    assert set(tasks.values()) <= set(on_page2)
    await done(db, [t for t in on_page2 if t not in tasks.values()])
    assert set(shown(await get(rm, to2))) == set(tasks.values())
    return rm, tasks, page1, to2, query_of(to2)["cursor"][0]


async def test_page_three_links_back_to_page_two_and_an_emptied_page_shows_the_one_before(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 250, assignee="rm-7")
    rm = stack.console_as(Role.RM, "rm-7")
    page1 = await get(rm, "/console/")
    assert link(PREVIOUS, page1) is None
    to2 = link(NEXT, page1)
    assert to2 is not None
    page2 = await get(rm, to2)
    cursor2 = query_of(to2)["cursor"][0]
    assert "back" not in query_of(to2)
    assert link(PREVIOUS, page2) is None  # its previous page is the first ("First page")
    to3 = link(NEXT, page2)
    assert to3 is not None
    assert query_of(to3)["back"] == [cursor2]  # the trail: the cursors the RM came through
    page3 = await get(rm, to3)
    assert [len(shown(p)) for p in (page1, page2, page3)] == [100, 100, 50]
    assert {html.unescape(b) for b in FORM_BACK.findall(page3.text)} == {cursor2}

    # "Previous page" on page 3: page 2 again, its own cursor, no trail before it
    back = link(PREVIOUS, page3)
    assert back is not None
    assert query_of(back) == {"status": ["open"], "cursor": [cursor2]}
    assert shown(await get(rm, back)) == shown(page2)

    # page 3's tasks all done elsewhere: page 3's address leads to page 2's, said so there
    await done(db, shown(page3))
    moved = await rm.get(to3)
    assert moved.status_code == 303, moved.text
    assert moved.headers["location"] == back + "&went=1"
    again = await get(rm, moved.headers["location"])
    assert shown(again) == shown(page2)
    assert 'id="work-list-went-back"' in again.text
    assert "this is the page before it" in again.text
    fragment = await get(rm, to3, headers=FRAGMENT)
    assert shown(fragment) == shown(page2)
    assert fragment.headers.get("hx-replace-url") == back
    assert link(NEXT, again) is None  # nothing after page 2 any more

    # and page 2's too: the first page
    await done(db, shown(page2))
    first = await get(rm, to3, headers=FRAGMENT)
    assert shown(first) == shown(page1)
    assert first.headers.get("hx-replace-url") == "/console/?status=open"


async def test_completing_the_last_task_of_page_two_lands_on_page_one(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    rm, tasks, page1, _, cursor = await page_two_of_only(settings, stack, db, ["C-B1", "C-B2"])

    # a plain post: page 2 again, one task left
    plain = await rm.post(
        f"/console/tasks/{tasks['C-B1']}/complete",
        data={"outcome": "contacted", "f_status": "open", "f_cursor": cursor, "f_back": ""},
    )
    assert plain.status_code in (302, 303), plain.text
    assert shown(await get(rm, plain.headers["location"])) == [tasks["C-B2"]]

    # htmx: the last task of page 2 completed: page 1's tasks, its address, the notice
    last = await rm.post(
        f"/console/tasks/{tasks['C-B2']}/complete",
        data={"outcome": "contacted", "f_status": "open", "f_cursor": cursor, "f_back": ""},
        headers=FRAGMENT,
    )
    assert last.status_code == 200, last.text
    assert "Task completed." in last.text
    assert "Nothing to show" not in last.text
    assert shown(last) == shown(page1)
    assert last.headers.get("hx-replace-url") == "/console/?status=open"


async def test_a_plain_post_that_empties_its_page_lands_on_the_shown_pages_address(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    rm, tasks, page1, to2, cursor = await page_two_of_only(settings, stack, db, ["C-BP"])

    # the last task of page 2 completed by a plain post (no script): one redirect, straight
    # to page 1's address, showing page 1, the task's notice and why it is not page 2
    answer = await rm.post(
        f"/console/tasks/{tasks['C-BP']}/complete",
        data={"outcome": "contacted", "f_status": "open", "f_cursor": cursor, "f_back": ""},
    )
    answer = await one_redirect(rm, answer)
    assert query_of(str(answer.url)) == {"status": ["open"], "went": ["1"], "done": ["1"]}
    assert shown(answer) == shown(page1)
    assert "Task completed." in answer.text
    assert 'id="work-list-went-back"' in answer.text

    # a supervisor's plain reassignment emptying page 2 likewise (its notice kept)
    tasks = await open_revisits(settings, stack, ["C-BQ"])
    on_page2 = shown(await get(rm, to2))
    await done(db, [t for t in on_page2 if t != tasks["C-BQ"]])
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    answer = await supervisor.post(
        f"/console/tasks/{tasks['C-BQ']}/reassign",
        data={"assignee": "rm-8", "f_status": "open", "f_assignee": "rm-7", "f_cursor": cursor},
    )
    answer = await one_redirect(supervisor, answer)
    assert "cursor" not in query_of(str(answer.url))
    assert query_of(str(answer.url))["given"] == ["rm-8"]
    assert "rm-8" in answer.text


def cursors(count: int) -> str:
    return ".".join(encode_cursor(START, uuid.UUID(int=n + 1)) for n in range(count))


BAD_TRAILS = {
    **{f"forged: {name}": cursor for name, cursor in FORGED.items()},
    "a forged one after a good one": cursors(1) + "." + FORGED["not json"],
    "an empty one": cursors(1) + "..",
    "more than the console keeps": cursors(17),
}


@pytest.mark.parametrize("trail", list(BAD_TRAILS.values()), ids=list(BAD_TRAILS))
async def test_a_forged_or_overlong_trail_is_the_400_page_and_nothing_is_recorded(
    settings: BranchlineSettings,
    stack: ApiClients,
    db: asyncpg.Connection[Any],
    trail: str,
) -> None:
    cursor = encode_cursor(START, uuid.UUID(int=99))
    rm = stack.console_as(Role.RM, "rm-7")
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    for headers in (None, FRAGMENT):
        page = await rm.get("/console/", params={"cursor": cursor, "back": trail}, headers=headers)
        assert page.status_code == 400, page.text
        assert "the cursor is malformed or altered" in page.text
    tasks = await open_revisits(settings, stack, ["C-BF"])
    before = await db.fetchval("SELECT count(*) FROM es_events")
    form = {"f_cursor": cursor, "f_back": trail}
    for headers in (None, FRAGMENT):
        answers = (
            await rm.post(
                f"/console/tasks/{tasks['C-BF']}/complete",
                data={"outcome": "contacted", **form},
                headers=headers,
            ),
            await supervisor.post(
                f"/console/tasks/{tasks['C-BF']}/reassign",
                data={"assignee": "rm-8", **form},
                headers=headers,
            ),
        )
        for answer in answers:
            assert answer.status_code == 400, answer.text
            assert "the cursor is malformed or altered" in answer.text
    assert await db.fetchval("SELECT count(*) FROM es_events") == before


async def test_the_console_marks_its_error_fragment_and_has_a_failure_region(
    stack: ApiClients,
) -> None:
    rm = stack.console_as(Role.RM, "rm-7")
    bad = await rm.get("/console/", params={"cursor": FORGED["not json"]}, headers=FRAGMENT)
    assert bad.status_code == 400, bad.text
    assert bad.headers.get("hx-retarget") == "#work-list"
    assert bad.headers.get("console-error-fragment") == "work-list"
    plain = await rm.get("/console/", params={"cursor": FORGED["not json"]})
    assert "console-error-fragment" not in plain.headers

    # the script swaps a 4xx only with both headers, and says a 5xx or no answer
    script = (await get(rm, "/console/static/console.js")).text
    assert 'getResponseHeader("Console-Error-Fragment")' in script
    for event in ('"htmx:responseError"', '"htmx:sendError"', '"htmx:timeout"'):
        assert event in script

    # the fixed region, in English and in Chinese
    for language, server, network, conflict in (
        ("en", "The server failed on this request", "No answer from the server", "The request"),
        ("zh-CN", "服务器处理此请求时出错", "服务器没有应答", "请求被拒绝"),
    ):
        page = await get(rm, "/console/", headers={"accept-language": language})
        region = FAILURE.search(page.text)
        assert region is not None, page.text
        attributes = html.unescape(region.group(1))
        assert 'aria-live="assertive"' in attributes
        assert 'role="alert"' in attributes
        assert f'data-server="{server}' in attributes
        assert f'data-network="{network}' in attributes
        assert f'data-conflict="{conflict}' in attributes  # a refused 4xx, by its kind
        for kind in ("session", "refused", "reason"):
            assert f"data-{kind}=" in attributes

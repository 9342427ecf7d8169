"""A console request the console refuses, sent by a plain form (no script, no htmx), is
answered with a console page of the same status in the user's language: what was refused
by its kind, the problem's title and the fields it names (names only), and a link back to
the page the form came from, its cursor kept where this console made it. htmx requests,
callers asking for JSON and the JSON API keep problem+json (#12)."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from branchline_shared.http.auth import Role
from tests.integration.followup.harness import ApiClients
from tests.integration.followup.test_console_work_pages import (
    FORGED,
    FRAGMENT,
    NEXT,
    add_tasks,
    shown,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BACK = re.compile(r'<a id="console-refused-back" href="([^"]+)"')
KIND = re.compile(r'<div id="console-refused" role="alert" data-kind="([a-z]+)"')


def back_link(page: httpx.Response) -> dict[str, list[str]]:
    found = BACK.search(page.text)
    assert found is not None, page.text
    parts = urlsplit(html.unescape(found.group(1)))
    assert parts.path == "/console/"
    return parse_qs(parts.query)


def kind_of(page: httpx.Response) -> str:
    found = KIND.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def test_a_refused_plain_post_is_the_consoles_page_of_its_status_linking_back(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 150, assignee="rm-7")
    rm = stack.console_as(Role.RM, "rm-7")
    page1 = await rm.get("/console/")
    found = NEXT.search(page1.text)
    assert found is not None
    to2 = html.unescape(found.group(1))
    cursor = parse_qs(urlsplit(to2).query)["cursor"][0]
    task = shown(await rm.get(to2))[0]
    before = await db.fetchval("SELECT count(*) FROM es_events")
    form = {"f_status": "open", "f_kind": "revisit", "f_cursor": cursor, "f_back": ""}

    # no outcome: FastAPI's 422, said on a console page (not problem+json), in English...
    refused = await rm.post(f"/console/tasks/{task}/complete", data=form)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("text/html")
    assert "<h1>Request refused" in refused.text
    assert kind_of(refused) == "refused"
    assert "The server said: Invalid request" in refused.text
    assert "Fields refused: outcome" in refused.text
    assert back_link(refused) == {"status": ["open"], "kind": ["revisit"], "cursor": [cursor]}
    assert 'id="console-failure"' in refused.text  # the console's own page, its frame

    # ... and in Chinese
    zh = await rm.post(
        f"/console/tasks/{task}/complete", data=form, headers={"accept-language": "zh-CN"}
    )
    assert zh.status_code == 422, zh.text
    assert "请求被拒绝" in zh.text
    assert "返回您刚才所在的页面" in zh.text

    # a forged cursor is not linked back to: the first page, the filters kept
    forged = await rm.post(
        f"/console/tasks/{task}/complete", data={**form, "f_cursor": FORGED["not json"]}
    )
    assert forged.status_code == 422, forged.text
    assert back_link(forged) == {"status": ["open"], "kind": ["revisit"]}

    # htmx and a caller asking for JSON keep the problem+json
    for headers in (FRAGMENT, {"accept": "application/json"}):
        kept = await rm.post(f"/console/tasks/{task}/complete", data=form, headers=headers)
        assert kept.status_code == 422, kept.text
        assert kept.headers["content-type"] == "application/problem+json"
    assert await db.fetchval("SELECT count(*) FROM es_events") == before


async def test_a_refused_plain_request_without_form_fields_links_back_to_its_referrer(
    stack: ApiClients,
) -> None:
    rm = stack.console_as(Role.RM, "rm-7")
    host = str(rm.base_url).rstrip("/")
    came_from = f"{host}/console/?status=overdue"

    # no such console page (404), a referrer of this console on this host: linked back to
    missing = await rm.post("/console/tasks/x/undo", data={}, headers={"referer": came_from})
    assert missing.status_code == 404, missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert kind_of(missing) == "refused"
    assert back_link(missing) == {"status": ["overdue"]}

    # a method the page does not take (405): its Allow kept; another site's referrer is not
    # linked to (the console's start instead)
    wrong = await rm.get(
        "/console/tasks/00000000-0000-0000-0000-000000000001/complete",
        headers={"referer": "https://elsewhere.example/console/?status=overdue"},
    )
    assert wrong.status_code == 405, wrong.text
    assert wrong.headers["allow"] == "POST"
    assert back_link(wrong) == {}

    # outside the console: the API's problem+json, as before
    api = await rm.get("/v1/no-such-route")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"

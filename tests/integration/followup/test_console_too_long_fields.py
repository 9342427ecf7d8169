"""A field of the followup console's forms longer than the form takes (#12): the refused page
links back to the form filled in with the rest, the field left out and named in
``too_long``; the form marks it (``aria-invalid``, described by a note naming its limit, in
English and Chinese) and never shows the value. The work list's filters (its filter form
and an action's ``f_*`` fields), the quality page's and the refusals page's search forms.
Never a 5xx, nothing recorded."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import httpx
import pytest

from branchline_shared.http.auth import Role
from tests.integration.followup.harness import ApiClients
from tests.integration.followup.test_console_work_pages import add_tasks, shown

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BACK = re.compile(r'<a id="console-refused-back" href="([^"]+)"')
LONG = "C" * 129
ZH = {"accept-language": "zh-CN"}
NOTES = (
    ({}, "Left out: it was longer than the 128 characters this field takes."),
    (ZH, "已略去\uff1a超出此字段允许的 128 个字符"),
)


def back_of(page: httpx.Response) -> str:
    assert page.status_code == 422, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert LONG not in page.text
    found = BACK.search(page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


def query_of(address: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(address).query)


def marked(page: httpx.Response, ident: str) -> str:
    found = re.search(rf'<(?:input|select) id="{ident}"[^>]*>', page.text)
    assert found is not None, page.text
    return found.group(0)


async def assert_marked(
    client: httpx.AsyncClient, address: str, ident: str, unmarked: str, limit: int = 128
) -> None:
    for headers, said in NOTES:
        form = await client.get(address, headers=headers)
        assert form.status_code == 200, form.text
        assert LONG not in form.text
        field = marked(form, ident)
        assert 'aria-invalid="true"' in field
        assert f'aria-describedby="{ident}-too-long"' in field
        note = re.search(
            rf'<span id="{ident}-too-long" class="error field-error">(.*?)</span>', form.text
        )
        assert note is not None, form.text
        assert html.unescape(note.group(1)).startswith(said.replace("128", str(limit)))
        assert "aria-invalid" not in marked(form, unmarked)


async def test_a_too_long_filter_of_the_work_list_is_marked_on_its_form(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 3, assignee="rm-7")
    rm = stack.console_as(Role.RM, "rm-7")
    before = await db.fetchval("SELECT count(*) FROM es_events")

    # the filter form's get: its way back names the client id, keeps the status
    back = back_of(await rm.get(f"/console/?status=overdue&client_id={LONG}"))
    assert query_of(back) == {"status": ["overdue"], "too_long": ["client_id"]}
    await assert_marked(rm, back, "f-client", "f-status")
    assert 'value=""' in marked(await rm.get(back), "f-client")

    # an action's form carrying the filters: the same, the action's own refusal beside it
    task = shown(await rm.get("/console/"))[0]
    form = {"outcome": "contacted", "f_status": "open", "f_client_id": LONG}
    back = back_of(await rm.post(f"/console/tasks/{task}/complete", data=form))
    assert query_of(back) == {"status": ["open"], "too_long": ["client_id"]}

    # a supervisor's assignee filter; a name no filter has is ignored, the list still shown
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    back = back_of(await supervisor.get(f"/console/?assignee={LONG}", headers=ZH))
    assert query_of(back) == {"status": ["open"], "too_long": ["assignee"]}
    await assert_marked(supervisor, back, "f-assignee", "f-client")
    ignored = await rm.get("/console/?too_long=cursor,x,note")
    assert ignored.status_code == 200, ignored.text
    assert "too-long" not in ignored.text
    assert len(shown(ignored)) == 3
    assert await db.fetchval("SELECT count(*) FROM es_events") == before


async def test_a_too_long_field_of_the_supervisors_search_forms_is_marked(
    stack: ApiClients,
) -> None:
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    sent = urlencode({"branch_id": "BR-001", "rm_id": LONG, "from": "2026-03-01"})
    for path in ("/console/quality", "/console/quality.csv"):
        back = back_of(await supervisor.get(f"{path}?{sent}"))
        assert back.startswith("/console/quality?")
        assert query_of(back) == {
            "branch_id": ["BR-001"],
            "from": ["2026-03-01"],
            "too_long": ["rm_id"],
        }
    await assert_marked(supervisor, back, "q-rm", "q-branch")
    kept = await supervisor.get(back)
    assert 'value="BR-001"' in marked(kept, "q-branch")

    back = back_of(await supervisor.get(f"/console/refusals?rule=D-01&branch_id={LONG}"))
    assert back.startswith("/console/refusals?")
    assert query_of(back) == {"rule": ["D-01"], "too_long": ["branch_id"]}
    await assert_marked(supervisor, back, "r-branch", "r-rule")

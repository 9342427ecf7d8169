"""The audit console's refused pages (#12): a refused search, export or entry links back to
the form it came from, filled in with what was typed (each field as the form takes it; no
cursor), without the browser's referrer and recording nothing until the form is sent again;
the refusal's title in the page's language; the console's own 403 pages (a role that may not
open the page, a refused CSRF token) are console pages of the same status, while htmx and
JSON callers keep the problem+json."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from branchline_audit.application.context import AuditContext
from branchline_audit.bootstrap import create_app
from branchline_audit.domain.filters import LedgerFilters
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import audit_context, quick_settings
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BACK = re.compile(r'<a id="console-refused-back" href="([^"]+)"')
KIND = re.compile(r'<div id="console-refused" role="alert" data-kind="([a-z]+)"')
TITLE = re.compile(r'<p id="console-refused-title">(.*?)</p>', re.S)
HTMX = {"hx-request": "true"}
ZH = {"accept-language": "zh-CN"}
EN = {"accept-language": "en-GB"}


@dataclass
class Console:
    client: httpx.AsyncClient
    audit: AuditContext
    tokens: TokenFactory

    def session(self, role: Role = Role.AUDITOR, **headers: str) -> dict[str, str]:
        token = self.tokens.token(role, sub=f"{role.value}-1")
        return {"cookie": f"bl_session_audit={token}", **headers}

    async def page(self, path: str, *, role: Role = Role.AUDITOR, **headers: str) -> httpx.Response:
        return await self.client.get(path, headers=self.session(role, **headers))

    async def reads(self) -> int:
        page = await self.audit.ledger.entries(
            LedgerFilters(type="audit.read"), after_position=0, limit=10_000
        )
        return len(page)


@pytest.fixture
async def console(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Console]:
    s = quick_settings(settings)
    async with (
        serve(create_app(s)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        audit_context(s) as audit,
    ):
        yield Console(client, audit, tokens)


def back_of(page: httpx.Response) -> tuple[str, dict[str, list[str]]]:
    found = BACK.search(page.text)
    assert found is not None, page.text
    parts = urlsplit(html.unescape(found.group(1)))
    return parts.path, parse_qs(parts.query)


def title_of(page: httpx.Response) -> str:
    found = TITLE.search(page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


def kind_of(page: httpx.Response) -> str:
    found = KIND.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def test_a_refused_search_links_back_to_its_form_filled_in_recording_nothing(
    console: Console,
) -> None:
    typed = {"purpose": "review of C-1", "client_id": "C-1", "branch_id": "BR-1"}
    # no referrer at all: the way back is the form's own page, by the refused request
    refused = await console.client.get(
        "/console/trail",
        params={**typed, "type": "t" * 65, "cursor": "3"},
        headers=console.session(**ZH),
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("text/html")
    assert "请求被拒绝" in refused.text
    assert title_of(refused).endswith(" 请求无效")  # the title translated, not quoted
    # said nowhere in English (the page's data-titles hold the English titles as keys)
    assert "Invalid request" not in re.sub(r"data-titles='[^']*'", "", refused.text)
    assert kind_of(refused) == "refused"
    path, query = back_of(refused)
    assert path == "/console/trail"
    assert query == {  # no cursor; the too-long field named, never its value
        **{k: [v] for k, v in typed.items()},
        "too_long": ["type"],
        "edit": ["true"],
    }

    # the form page: filled in with what was typed, nothing read, nothing recorded
    form = await console.page(f"{path}?{urlencode(query, doseq=True)}")
    assert form.status_code == 200, form.text
    assert 'id="form-kept"' in form.text
    assert 'value="review of C-1"' in form.text
    assert 'value="C-1"' in form.text
    assert 'value="BR-1"' in form.text
    assert 'id="trail"' not in form.text
    assert await console.reads() == 0
    sent = await console.page("/console/trail?purpose=review+of+C-1&client_id=C-1")
    assert sent.status_code == 200, sent.text
    assert await console.reads() == 1  # sent again, the read is recorded as ever

    # who read what keeps its own form; an export's refusal goes back to the trail's form
    reads = await console.page("/console/reads?purpose=p&actor_id=" + "a" * 129)
    assert back_of(reads) == (
        "/console/reads",
        {"purpose": ["p"], "too_long": ["actor_id"], "edit": ["true"]},
    )
    export = await console.page("/console/export?purpose=p&client_id=C-2&format=xml")
    assert export.status_code == 422, export.text
    assert back_of(export) == (
        "/console/trail",
        {"purpose": ["p"], "client_id": ["C-2"], "edit": ["true"]},
    )

    # an entry's purpose form; a position that is none: the trail's form, the purpose kept
    entry = await console.page("/console/entries/5?purpose=" + "p" * 501)
    assert entry.status_code == 422, entry.text
    assert back_of(entry) == ("/console/entries/5", {"too_long": ["purpose"], "edit": ["true"]})
    kept = await console.page("/console/entries/5?purpose=why&edit=true")
    assert kept.status_code == 200, kept.text
    assert 'id="form-kept"' in kept.text
    assert 'value="why"' in kept.text
    not_one = await console.page("/console/entries/five?purpose=why")
    assert not_one.status_code == 422, not_one.text
    assert back_of(not_one) == ("/console/trail", {"purpose": ["why"], "edit": ["true"]})
    assert await console.reads() == 1

    # in English the title is the catalogue's own English; htmx keeps the problem+json
    en = await console.page("/console/trail?purpose=p&type=" + "t" * 65, **EN)
    assert title_of(en) == "The server said: Invalid request"
    kept_json = await console.page("/console/trail?purpose=p&type=" + "t" * 65, **HTMX)
    assert kept_json.headers["content-type"] == "application/problem+json"


def marked_field(page: httpx.Response, ident: str) -> str:
    found = re.search(rf'<input id="{ident}"[^>]*>', page.text)
    assert found is not None, page.text
    return found.group(0)


async def test_a_field_left_out_as_too_long_is_marked_on_the_form_in_both_languages(
    console: Console,
) -> None:
    long_branch = "B" * 129
    refused = await console.page(
        f"/console/trail?purpose=p&client_id=C-9&branch_id={long_branch}", **EN
    )
    assert refused.status_code == 422, refused.text
    path, query = back_of(refused)
    assert query["too_long"] == ["branch_id"]
    assert long_branch not in html.unescape(BACK.search(refused.text)[1])  # type: ignore[index]

    for headers, said in (
        (EN, "Left out: it was longer than the 128 characters this field takes."),
        (ZH, "已略去\uff1a超出此字段允许的 128 个字符"),
    ):
        form = await console.page(f"{path}?{urlencode(query, doseq=True)}", **headers)
        assert form.status_code == 200, form.text
        branch = marked_field(form, "t-branch")
        assert 'aria-invalid="true"' in branch
        assert 'aria-describedby="t-branch-too-long"' in branch
        assert 'value=""' in branch
        note = re.search(
            r'<span id="t-branch-too-long" class="error field-error">(.*?)</span>', form.text
        )
        assert note is not None, form.text
        assert html.unescape(note.group(1)).startswith(said)
        assert "aria-invalid" not in marked_field(form, "t-client")
        assert 'value="C-9"' in marked_field(form, "t-client")
    assert await console.reads() == 0

    # the entry's purpose form marks its purpose; a name no form has is ignored
    entry = await console.page("/console/entries/5?too_long=purpose,cursor,x&edit=true")
    assert 'aria-describedby="e-purpose-too-long"' in marked_field(entry, "e-purpose")
    assert entry.text.count("-too-long") == 2  # the input and its note
    unmarked = await console.page("/console/trail?too_long=branch_id")  # not the form kept
    assert "too-long" not in unmarked.text
    assert await console.reads() == 0


async def test_the_consoles_own_403_pages_are_console_pages_and_problems_for_scripts(
    console: Console,
) -> None:
    # a role that may not open the page: the console's page of the refusal, in Chinese,
    # the kind said, a way back that is not the refused page
    forbidden = await console.page("/console/trail?purpose=x", role=Role.SUPERVISOR, **ZH)
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.headers["content-type"].startswith("text/html")
    assert "<h1>无权访问" in forbidden.text
    assert kind_of(forbidden) == "session"
    assert title_of(forbidden).endswith(" 禁止访问")
    path, _ = back_of(forbidden)
    assert path != "/console/trail"
    assert 'id="console-failure"' in forbidden.text
    en = await console.page(
        "/console/reads",
        role=Role.RM,
        referer=f"{str(console.client.base_url).rstrip('/')}/console/refusals",
        **EN,
    )
    assert en.status_code == 403
    assert back_of(en) == ("/console/refusals", {})  # the referrer, this console's page
    assert "<h1>Not allowed" in en.text

    # htmx and a caller asking for JSON: the problem+json
    for headers in (HTMX, {"accept": "application/json"}):
        problem = await console.page("/console/trail?purpose=x", role=Role.SUPERVISOR, **headers)
        assert problem.status_code == 403
        assert problem.headers["content-type"] == "application/problem+json"
        assert problem.json()["type"].endswith("/forbidden")

    # a form without its CSRF token: the console's page, linking back to where the form was
    came_from = f"{str(console.client.base_url).rstrip('/')}/console/trail?purpose=x"
    csrf = await console.client.post(
        "/console/locale",
        data={"locale": "en", "next": "/console/trail"},
        headers=console.session(referer=came_from, **ZH),
    )
    assert csrf.status_code == 403, csrf.text
    assert csrf.headers["content-type"].startswith("text/html")
    assert "<h1>表单已失效" in csrf.text
    assert kind_of(csrf) == "session"
    assert back_of(csrf) == ("/console/trail", {"purpose": ["x"]})
    assert "bl_csrf=" in csrf.headers["set-cookie"]  # a new token, as before
    scripted = await console.client.post(
        "/console/locale", data={"locale": "en"}, headers=console.session(**HTMX)
    )
    assert scripted.status_code == 403
    assert scripted.headers["content-type"] == "application/problem+json"
    assert scripted.json()["type"].endswith("/csrf-refused")
    assert "bl_csrf=" in scripted.headers["set-cookie"]

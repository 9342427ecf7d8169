"""The console's refused page says a refusal's title in the page's language: every title the
services answer with is in the Babel catalogue (checked against their problem tables and the
shared handlers), and a title the catalogue does not know is quoted as the server's English,
marked as English. The console's own 403 pages (a role that may not open the page, a refused
CSRF token) are console pages of the refusal; htmx and JSON callers get problem+json (#12)."""

from __future__ import annotations

import html
import importlib
import re
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from tests.unit.console.console_support import BACK, console_app, requested

from branchline_shared.console.i18n import translations
from branchline_shared.console.problem_titles import PROBLEM_TITLES, translated_title
from branchline_shared.console.web import CsrfChecked, console_roles
from branchline_shared.http.auth import Principal, Role
from branchline_shared.http.problems import Problem

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

ROOT = Path(__file__).resolve().parents[3]
TABLES = (
    "branchline_audit.entrypoints.problems",
    "branchline_followup.entrypoints.problems",
    "branchline_intake.entrypoints.problems",
)
LITERAL_TITLE = re.compile(r'Problem\(\s*(?:\w+|\d+),\s*"([^"]+)",')
TITLE = re.compile(r'<p id="console-refused-title">(.*?)</p>', re.S)


def answered_titles() -> set[str]:
    """The titles of the services' problem tables and of every ``Problem(status, "title"``
    written out in the product's code."""
    titles: set[str] = set()
    for name in TABLES:
        for shape in importlib.import_module(name).PROBLEMS.values():
            titles.add(shape.title)
    for folder in (ROOT / "shared", ROOT / "services"):
        for source in folder.rglob("*.py"):
            titles.update(LITERAL_TITLE.findall(source.read_text(encoding="utf-8")))
    return titles


def test_every_title_the_services_answer_with_is_translated() -> None:
    titles = answered_titles()
    assert {"Invalid request", "Not found", "Task closed", "Ledger integrity failure"} <= titles
    assert sorted(titles - PROBLEM_TITLES) == []
    zh = translations("zh").gettext
    assert [t for t in sorted(PROBLEM_TITLES) if zh(t) == t] == []
    assert translated_title("Invalid request", zh) == "请求无效"
    assert translated_title("A title no table has", zh) is None


class Codec:
    def verify(self, token: str) -> Principal:
        return Principal(subject=token, roles=frozenset({Role(token)}))


def an_app() -> FastAPI:
    router = APIRouter(prefix="/console")

    @router.get("/auditors", dependencies=[console_roles(Role.AUDITOR)])
    async def auditors() -> None:
        return None

    @router.post("/act", dependencies=[CsrfChecked])
    async def act() -> None:
        return None

    @router.get("/new")
    async def new() -> None:
        raise Problem(409, "A title no table has", "new", kind="brand-new")

    return console_app(Codec(), router)


async def answers(*requests: tuple[str, str, dict[str, str]]) -> list[httpx.Response]:
    signed_in = [
        (method, path, {"headers": {"cookie": "bl_session_test=rm", **h}})
        for method, path, h in requests
    ]
    return await requested(an_app(), *signed_in)


async def test_a_title_the_catalogue_does_not_know_is_quoted_as_the_servers_english() -> None:
    (page,) = await answers(("GET", "/console/new", {"accept-language": "zh-CN"}))
    assert page.status_code == 409, page.text
    assert "请求被拒绝" in page.text
    found = TITLE.search(page.text)
    assert found is not None, page.text
    assert '<span lang="en">A title no table has</span>' in found.group(1)


@pytest.mark.parametrize(
    ("locale", "heading", "title"),
    [("en", "Not allowed", "Forbidden"), ("zh", "无权访问", "禁止访问")],
)
async def test_a_page_the_role_may_not_open_is_the_consoles_403_page(
    locale: str, heading: str, title: str
) -> None:
    plain, htmx, json_caller = await answers(
        ("GET", "/console/auditors?x=1", {"accept-language": locale}),
        ("GET", "/console/auditors", {"hx-request": "true"}),
        ("GET", "/console/auditors", {"accept": "application/json"}),
    )
    assert plain.status_code == 403, plain.text
    assert plain.headers["content-type"].startswith("text/html")
    assert f"<h1>{heading}" in plain.text
    assert 'data-kind="session"' in plain.text
    found = TITLE.search(plain.text)
    assert found is not None, plain.text
    assert found.group(1).endswith(f" {title}")
    back = BACK.search(plain.text)
    assert back is not None, plain.text
    assert back.group(1) == "/console/mine"  # the role's own start, never the refused page
    assert "/console/login?next=%2Fconsole%2Fauditors%3Fx%3D1" in html.unescape(plain.text)
    for problem in (htmx, json_caller):
        assert problem.status_code == 403, problem.text
        assert problem.headers["content-type"] == "application/problem+json"
        assert problem.json()["type"].endswith("/forbidden")


async def test_a_refused_csrf_token_is_the_consoles_403_page_linking_back() -> None:
    came_from = {"referer": "http://console/console/list?page=2", "accept-language": "en"}
    plain, htmx = await answers(
        ("POST", "/console/act", came_from),
        ("POST", "/console/act", {"hx-request": "true", "x-csrf-token": "forged"}),
    )
    assert plain.status_code == 403, plain.text
    assert plain.headers["content-type"].startswith("text/html")
    assert "<h1>Form expired" in plain.text
    assert 'data-kind="session"' in plain.text
    back = BACK.search(plain.text)
    assert back is not None, plain.text
    assert html.unescape(back.group(1)) == "/console/list?page=2"
    assert htmx.status_code == 403, htmx.text
    assert htmx.headers["content-type"] == "application/problem+json"
    assert htmx.json()["type"].endswith("/csrf-refused")
    for answer in (plain, htmx):
        assert "bl_csrf=" in answer.headers["set-cookie"]  # a new token, as before

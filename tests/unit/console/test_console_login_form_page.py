"""The console's login form is a form page of its own (#12): a refused sign-in shows the form
again, filled in except the token (a secret), the refused field marked and named in the page's
language; a refusal answered by the console's refused page (a field longer than the form
takes, a stale CSRF token) links back to the login form filled in the same way, the too-long
field marked and its value never sent back. Every page carries the translations of the
problem titles for ``console.js`` (the htmx failure region says a title in the page's
language)."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from tests.unit.console.console_support import back_of, console_app, requested

from branchline_shared.http.auth import Principal, Role
from branchline_shared.http.problems import Problem

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

TITLES = re.compile(r"data-titles='([^']*)'")
CSRF = {"cookie": "bl_csrf=known"}
SECRET = "not.a-valid.token-SECRET"


class Codec:
    """Tokens are ``ok:<role>:<subject>``; anything else is refused."""

    def verify(self, token: str) -> Principal:
        kind, _, rest = token.partition(":")
        role, _, subject = rest.partition(":")
        if kind != "ok" or not subject:
            raise Problem(401, "Unauthorized", "not a token", kind="unauthorized")
        return Principal(subject=subject, roles=frozenset({Role(role)}))

    def issue(self, subject: str, roles: list[Role], *, ttl: object, now: datetime) -> str:
        return f"ok:{roles[0].value}:{subject}"


def an_app() -> FastAPI:
    return console_app(Codec(), dev_mode=True, dev_roles=(Role.RM, Role.SUPERVISOR))


async def sign_in(
    fields: dict[str, str], *, locale: str = "en", csrf: str = "known"
) -> httpx.Response:
    data = {"csrf_token": csrf, **fields}
    headers = {**CSRF, "accept-language": locale}
    (page,) = await requested(
        an_app(), ("POST", "/console/login", {"data": data, "headers": headers})
    )
    return page


async def opened(path: str, *, locale: str = "en") -> httpx.Response:
    headers = {**CSRF, "accept-language": locale}
    (page,) = await requested(an_app(), ("GET", path, {"headers": headers}))
    return page


def tag(page: httpx.Response, element: str, ident: str) -> str:
    found = re.search(rf'<{element} id="{ident}"[^>]*>', page.text)
    assert found is not None, page.text
    return found.group(0)


async def test_a_refused_token_shows_the_form_again_the_token_named_and_not_sent_back() -> None:
    page = await sign_in({"token": SECRET, "next": "/console/clients/C-1"}, locale="zh")
    assert page.status_code == 401, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert SECRET not in page.text
    token = tag(page, "textarea", "token")
    assert 'aria-invalid="true"' in token
    assert 'aria-describedby="token-error"' in token
    error = re.search(r'<p id="token-error" class="error" role="alert">(.*?)</p>', page.text, re.S)
    assert error is not None, page.text
    said = " ".join(error.group(1).split())
    assert said.startswith("为您签发的访问令牌")
    assert "JWT" in said
    assert "\uff1a此令牌无效" in said  # the label joined by the full-width colon
    assert "令牌不会再次显示" in page.text
    assert 'name="next" value="/console/clients/C-1"' in page.text


@pytest.mark.parametrize(
    ("role", "subject", "field", "said"),
    [
        ("rm", "rm 7", "subject", "Staff id: A staff id is 1 to 128 letters"),
        ("admin", "admin-7", "role", "Role: A dev token can be issued only"),
    ],
)
async def test_a_refused_dev_sign_in_is_the_form_filled_in_the_field_named(
    role: str, subject: str, field: str, said: str
) -> None:
    page = await sign_in({"role": role, "subject": subject, "next": "/console/team"})
    assert page.status_code == 422, page.text
    marked = tag(page, "select" if field == "role" else "input", field)
    assert 'aria-invalid="true"' in marked
    assert f'aria-describedby="{field}-error"' in marked
    text = " ".join(html.unescape(page.text).split())
    assert said in text
    assert f'value="{html.escape(subject)}"' in tag(page, "input", "subject")  # kept
    if role == "rm":
        assert '<option value="rm" selected>' in page.text
    assert 'name="next" value="/console/team"' in page.text


async def test_a_too_long_staff_id_links_back_to_the_form_marking_it_without_its_value() -> None:
    long_subject = "s" * 129
    refused = await sign_in({"role": "supervisor", "subject": long_subject, "next": "/console/q"})
    assert refused.status_code == 422, refused.text
    path, query = back_of(refused)
    assert path == "/console/login"
    assert query == {"role": ["supervisor"], "next": ["/console/q"], "too_long": ["subject"]}

    form = await opened(f"{path}?{urlencode(query, doseq=True)}")
    assert form.status_code == 200, form.text
    assert long_subject not in form.text
    subject = tag(form, "input", "subject")
    assert 'aria-invalid="true"' in subject
    assert 'aria-describedby="login-subject-too-long"' in subject
    assert "longer than the 128 characters this field takes" in form.text
    assert '<option value="supervisor" selected>' in form.text
    assert 'name="next" value="/console/q"' in form.text
    zh = await opened("/console/login?too_long=subject", locale="zh")
    assert "超出此字段允许的 128 个字符" in zh.text


async def test_a_stale_form_links_back_to_the_login_form_never_with_the_token() -> None:
    refused = await sign_in(
        {"token": SECRET, "role": "rm", "subject": "rm-7", "next": "/console/x"}, csrf="stale"
    )
    assert refused.status_code == 403, refused.text
    assert "Form expired" in refused.text
    path, query = back_of(refused)
    assert path == "/console/login"
    assert query == {"role": ["rm"], "subject": ["rm-7"], "next": ["/console/x"]}
    assert SECRET not in refused.text


@pytest.mark.parametrize(("locale", "expected"), [("zh", "请求无效"), ("en", None)])
async def test_every_page_carries_the_problem_titles_in_its_language(
    locale: str, expected: str | None
) -> None:
    page = await opened("/console/login", locale=locale)
    found = TITLES.search(page.text)
    assert found is not None, page.text
    titles = json.loads(html.unescape(found.group(1)))
    assert titles.get("Invalid request") == expected
    if locale == "zh":
        assert len(titles) == 38
        assert titles["Task closed"] != "Task closed"

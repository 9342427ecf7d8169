"""The console's refusals in the page's language, the refused field named on its form (#12):
htmx's failure region says a refused request's title in Chinese on a Chinese page (a title
the page has no translation of: the server's English, marked ``lang="en"``); a field the
audit console's form page leaves out as too long is marked there, with why; a refused
sign-in shows the login form again, filled in except the token, the field named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.browser.console_support import check_accessible, login, shot
from tests.support.dev_stack import DevStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_a_refused_htmx_request_and_a_too_long_field_are_said_in_chinese(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    audit = dev_stack.url("audit")
    context = browser.new_context(locale="zh-CN")
    auditor = context.new_page()
    login(auditor, audit, "auditor", "auditor-named-1")
    auditor.goto(f"{audit}/console/trail")
    failure = auditor.locator("#console-failure")
    expect(failure).to_be_empty()

    # a real 422 problem+json ("Invalid request") to an htmx request: said in Chinese
    auditor.evaluate(
        "htmx.ajax('GET', '/console/trail?purpose=p&type=' + 't'.repeat(65), "
        "{target: '#main', swap: 'none'})"
    )
    expect(failure).to_contain_text("服务器说明")
    expect(failure).to_contain_text(" 请求无效 (HTTP 422)")
    expect(failure).not_to_contain_text("Invalid request")
    expect(failure.locator("span[lang=en]")).to_have_count(0)
    shot(auditor, screenshots, "named-htmx-zh")

    # a title the page has no translation of: as the server sent it, marked as English
    def unknown(route: Route) -> None:
        route.fulfill(
            status=409,
            content_type="application/problem+json",
            body=json.dumps({"type": "about:blank", "title": "A brand new title", "status": 409}),
        )

    auditor.route("**/console/reads*", unknown)
    auditor.evaluate("htmx.ajax('GET', '/console/reads', {target: '#main', swap: 'none'})")
    expect(failure.locator("span[lang=en]")).to_have_text("A brand new title")
    expect(failure).to_contain_text("(HTTP 409)")
    auditor.unroute("**/console/reads*")

    # a field too long for the form: the way back marks it, with why, its value not kept
    refused = auditor.goto(f"{audit}/console/trail?purpose=review&branch_id=" + "B" * 129)
    assert refused is not None
    assert refused.status == 422
    auditor.locator("#console-refused-back").click()
    expect(auditor).to_have_url(re.compile(r"too_long=branch_id"))
    branch = auditor.locator("#t-branch")
    expect(branch).to_have_attribute("aria-invalid", "true")
    expect(branch).to_have_value("")
    expect(branch).to_have_accessible_description(re.compile("已略去.超出此字段允许的 128 个字符"))
    expect(auditor.locator("#t-purpose")).to_have_value("review")
    check_accessible(auditor, "named-too-long-zh")
    shot(auditor, screenshots, "named-too-long-zh")
    context.close()


def test_a_refused_sign_in_shows_the_form_again_filled_in_the_field_named(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    audit = dev_stack.url("audit")
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(f"{audit}/console/login?next=%2Fconsole%2Freads")
    page.select_option("#role", "auditor")
    page.fill("#subject", "auditor named")  # a space: no staff id
    page.locator("#subject").evaluate("(input) => input.removeAttribute('pattern')")
    with page.expect_response(re.compile(r"/console/login$")) as sent:
        page.locator("form:has(#role) button[type=submit]").click()
    assert sent.value.status == 422
    subject = page.locator("#subject")
    expect(subject).to_have_value("auditor named")
    expect(subject).to_have_attribute("aria-invalid", "true")
    expect(subject).to_have_accessible_description(re.compile("^员工编号: 员工编号由"))
    expect(page.locator("#role")).to_have_value("auditor")
    check_accessible(page, "named-login-zh")
    shot(page, screenshots, "named-login-zh")

    # the token form: refused, the form again without the token, the token named
    page.fill("#token", "not-a-token-SECRET")
    with page.expect_response(re.compile(r"/console/login$")) as sent:
        page.locator("form:has(#token) button[type=submit]").click()
    assert sent.value.status == 401
    token = page.locator("#token")
    expect(token).to_have_value("")
    expect(token).to_have_attribute("aria-invalid", "true")
    expect(page.locator("body")).not_to_contain_text("SECRET")

    # corrected: signed in, and on to the page it was for
    page.select_option("#role", "auditor")
    page.fill("#subject", "auditor-named")
    page.locator("form:has(#role) button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/console/reads$"))
    context.close()

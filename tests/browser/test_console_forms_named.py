"""The console's refusals in the page's language, the refused field named on its form (#12):
htmx's failure region says a refused request's title in Chinese on a Chinese page (a title
the page has no translation of: the server's English, marked ``lang="en"``); a field the
audit console's form page, or the followup console's work list, leaves out as too long is
marked there, with why; a refused sign-in shows the login form again, filled in except the
token, the field named (label and text joined by the full-width colon); a marked filter of
the work list, sent again validly through htmx, is unmarked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.console_support import (
    DEV_SIGN_IN,
    check_accessible,
    chinese_page,
    fill_dev_login,
    problem_answer,
    shot,
    signed_in_chinese,
)
from tests.support.dev_stack import DevStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def too_long_marked(page: Page, address: str, name: str, field: str) -> None:
    """``address`` completed with a value one character longer than the field takes (128)
    is refused (422); its way back marks the field, with why, its value not kept."""
    refused = page.goto(address + "L" * 129)
    assert refused is not None
    assert refused.status == 422
    page.locator("#console-refused-back").click()
    expect(page).to_have_url(re.compile(rf"too_long={name}"))
    marked = page.locator(field)
    expect(marked).to_have_attribute("aria-invalid", "true")
    expect(marked).to_have_value("")
    expect(marked).to_have_accessible_description(re.compile("已略去.超出此字段允许的 128 个字符"))
    expect(page.locator("body")).not_to_contain_text("L" * 129)


def test_a_refused_htmx_request_and_a_too_long_field_are_said_in_chinese(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    audit = dev_stack.url("audit")
    context, auditor = signed_in_chinese(browser, audit, "auditor", "auditor-named-1")
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
    auditor.route("**/console/reads*", problem_answer(409, "A brand new title"))
    auditor.evaluate("htmx.ajax('GET', '/console/reads', {target: '#main', swap: 'none'})")
    expect(failure.locator("span[lang=en]")).to_have_text("A brand new title")
    expect(failure).to_contain_text("(HTTP 409)")
    auditor.unroute("**/console/reads*")

    # a field too long for the form: the way back marks it, with why, its value not kept
    too_long_marked(
        auditor, f"{audit}/console/trail?purpose=review&branch_id=", "branch_id", "#t-branch"
    )
    expect(auditor.locator("#t-purpose")).to_have_value("review")
    check_accessible(auditor, "named-too-long-zh")
    shot(auditor, screenshots, "named-too-long-zh")
    context.close()


def test_a_refused_sign_in_shows_the_form_again_filled_in_the_field_named(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    audit = dev_stack.url("audit")
    context, page = chinese_page(browser)
    page.goto(f"{audit}/console/login?next=%2Fconsole%2Freads")
    fill_dev_login(page, "auditor", "auditor named")  # a space: no staff id
    page.locator("#subject").evaluate("(input) => input.removeAttribute('pattern')")
    with page.expect_response(re.compile(r"/console/login$")) as sent:
        page.locator(DEV_SIGN_IN).click()
    assert sent.value.status == 422
    subject = page.locator("#subject")
    expect(subject).to_have_value("auditor named")
    expect(subject).to_have_attribute("aria-invalid", "true")
    expect(subject).to_have_accessible_description(re.compile("^员工编号\uff1a员工编号由"))
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
    fill_dev_login(page, "auditor", "auditor-named")
    page.locator(DEV_SIGN_IN).click()
    expect(page).to_have_url(re.compile(r"/console/reads$"))
    context.close()


def test_a_too_long_filter_of_the_followup_work_list_is_marked_in_chinese(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    followup = dev_stack.url("followup")
    context, rm = signed_in_chinese(browser, followup, "rm", "rm-named-1")
    too_long_marked(rm, f"{followup}/console/?status=overdue&client_id=", "client_id", "#f-client")
    expect(rm.locator("#f-status")).to_have_value("overdue")
    check_accessible(rm, "named-followup-too-long-zh")
    shot(rm, screenshots, "named-followup-too-long-zh")

    # filtered again, validly, through htmx (only the list is swapped): no longer marked
    field = rm.locator("#f-client")
    field.fill("C-NAMED-1")
    rm.locator("#filters button[type=submit]").click()
    expect(rm).to_have_url(re.compile(r"client_id=C-NAMED-1"))
    expect(rm).not_to_have_url(re.compile(r"too_long"))
    expect(field).not_to_have_attribute("aria-invalid", "true")
    expect(field).not_to_have_attribute("aria-describedby", re.compile(r"too-long"))
    expect(rm.locator("#f-client-too-long")).to_have_count(0)
    expect(rm.locator("#f-status")).to_have_value("overdue")
    context.close()

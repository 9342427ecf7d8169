"""The console with JavaScript switched off (#12): a plain form the console refuses shows the
console's own page of the refusal, of the same status, in the page's language, naming the
field, with a link back to the page the form came from; nothing is recorded."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.console_support import (
    check_accessible,
    client_with_closed_visit,
    login,
    shot,
    wait_until,
)
from tests.support.dev_stack import DevStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

RM = "rm-plain-1"


def test_a_refused_plain_form_shows_the_consoles_page_and_links_back(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    followup = dev_stack.url("followup")
    client_with_closed_visit(dev_stack, "C-PLAIN-REFUSED", RM)
    context = browser.new_context(locale="en-GB", java_script_enabled=False)
    admin = context.new_page()
    login(admin, followup, "admin", "admin-plain-1")
    rows = admin.locator("#work-list tbody tr")

    def listed() -> bool:
        admin.goto(f"{followup}/console/?assignee={RM}")
        return rows.count() >= 1

    wait_until(listed, within=120)
    task = rows.first.get_attribute("data-task-id")
    row = admin.locator(f"#task-{task}")
    row.locator("summary", has_text="Reassign").click()  # native details: no script needed
    row.locator("input[name=assignee]").fill("rm plain 2")  # a space: no staff id (422)
    with admin.expect_response(re.compile(r"/reassign$")) as sent:
        row.locator("form[action$='/reassign'] button[type=submit]").click()
    assert sent.value.status == 422
    assert sent.value.headers["content-type"].startswith("text/html")
    expect(admin.locator("h1")).to_contain_text("Request refused")
    expect(admin.locator("#console-refused")).to_contain_text("nothing was done")
    expect(admin.locator("#console-refused")).to_contain_text("Fields refused: assignee")
    shot(admin, screenshots, "plain-refused")

    admin.locator("#console-refused-back").click()
    expect(admin).to_have_url(re.compile(rf"/console/\?status=open&assignee={RM}$"))
    expect(admin.locator(f"#task-{task}")).to_have_count(1)  # nothing was recorded
    context.close()


def test_the_audit_consoles_refusals_lead_back_to_their_forms_in_chinese(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    """No referrer needed: a refused search opened from an address links back to its form,
    filled in, nothing read; a stale CSRF token and a role that may not open the page are the
    console's 403 pages, in the page's language, with a way back (#12)."""
    audit = dev_stack.url("audit")
    context = browser.new_context(locale="zh-CN", java_script_enabled=False)
    auditor = context.new_page()
    login(auditor, audit, "auditor", "auditor-plain-1")
    refused = auditor.goto(
        f"{audit}/console/trail?purpose=quarterly+review&client_id=C-1&type=" + "t" * 65
    )
    assert refused is not None
    assert refused.status == 422
    expect(auditor.locator("h1")).to_contain_text("请求被拒绝")
    expect(auditor.locator("#console-refused-title")).to_contain_text("请求无效")
    expect(auditor.locator("#console-refused")).not_to_contain_text("Invalid request")
    shot(auditor, screenshots, "audit-refused-zh")

    auditor.locator("#console-refused-back").click()
    expect(auditor).to_have_url(re.compile(r"/console/trail\?.*edit=true"))
    expect(auditor.locator("#form-kept")).to_have_count(1)
    expect(auditor.locator("#t-purpose")).to_have_value("quarterly review")
    expect(auditor.locator("#t-client")).to_have_value("C-1")
    expect(auditor.locator("#t-type")).to_have_value("")
    expect(auditor.locator("#trail")).to_have_count(0)  # nothing read yet
    auditor.locator("form.filters button[type=submit]").click()
    expect(auditor).to_have_url(re.compile(r"/console/trail\?purpose=quarterly\+review"))
    expect(auditor.locator("#form-kept")).to_have_count(0)

    # the form's security token gone stale (another tab signed in again): the 403 page
    host = urlsplit(audit).hostname or ""
    context.add_cookies([{"name": "bl_csrf", "value": "stale", "domain": host, "path": "/console"}])
    with auditor.expect_response(re.compile(r"/console/locale$")) as sent:
        auditor.locator("button[name=locale][value=en]").click()
    assert sent.value.status == 403
    expect(auditor.locator("h1")).to_contain_text("表单已失效")
    expect(auditor.locator("#console-refused")).to_have_attribute("data-kind", "session")
    shot(auditor, screenshots, "audit-csrf-zh")
    auditor.locator("#console-refused-back").click()
    expect(auditor).to_have_url(re.compile(r"/console/trail\?purpose=quarterly\+review"))
    context.close()

    # a role that may not open the page (script on, its accessibility checked)
    scripted = browser.new_context(locale="en-GB")
    supervisor = scripted.new_page()
    login(supervisor, audit, "supervisor", "supervisor-plain-1")
    answer = supervisor.goto(f"{audit}/console/trail?purpose=x")
    assert answer is not None
    assert answer.status == 403
    expect(supervisor.locator("h1")).to_contain_text("Not allowed")
    expect(supervisor.locator("#console-refused-title")).to_contain_text("Forbidden")
    back = supervisor.locator("#console-refused-back").get_attribute("href") or ""
    assert not back.startswith("/console/trail"), back
    check_accessible(supervisor, "audit-forbidden")
    shot(supervisor, screenshots, "audit-forbidden-en")
    scripted.close()

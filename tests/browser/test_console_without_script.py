"""The console with JavaScript switched off (#12): a plain form the console refuses shows the
console's own page of the refusal, of the same status, in the page's language, naming the
field, with a link back to the page the form came from; nothing is recorded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.console_support import client_with_closed_visit, login, shot, wait_until
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

"""The console end to end in headless Chromium: an RM completes a task that an event posted
to intake created; the supervisor's board changes; the auditor finds the completion in the
trail and verifies its inclusion proof and the checkpoint signature in the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.console_support import (
    client_with_closed_visit,
    login,
    shot,
    survey_answered,
    wait_until,
)
from tests.support.dev_stack import DevStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

RM = "rm-console-1"
COLLEAGUE = "rm-console-2"
CLIENT = "C-CONSOLE-1"


def board_counts(page: Page, rm: str) -> dict[str, int] | None:
    row = page.locator(f'#team-board tr[data-rm="{rm}"]')
    if row.count() == 0:
        return None
    return {
        measure: int(row.locator(f'td[data-measure="{measure}"]').inner_text().strip())
        for measure in ("open", "overdue", "escalated", "done")
    }


def test_rm_completes_supervisor_sees_auditor_verifies(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    followup, audit = dev_stack.url("followup"), dev_stack.url("audit")
    client_with_closed_visit(dev_stack, CLIENT, RM)

    supervisor = browser.new_context(locale="en-GB").new_page()
    login(supervisor, followup, "supervisor", "supervisor")
    assert supervisor.url.endswith("/console/team")

    def board_with_rm() -> dict[str, int] | None:
        supervisor.reload()
        return board_counts(supervisor, RM)

    rm = browser.new_context(locale="en-GB").new_page()
    login(rm, followup, "rm", RM)
    survey = rm.locator("#work-list tbody tr", has_text="Satisfaction survey").filter(
        has_text=CLIENT
    )

    def survey_listed() -> bool:
        rm.reload()
        return survey.count() == 1

    wait_until(survey_listed)
    # The board's counts before the completion are read once the survey is there: the RM's
    # row shows from the registration's task on, and read earlier (the worker still applying
    # the visit's close) it would count one open task fewer than the completion takes away.
    before = wait_until(board_with_rm)
    expect(survey.locator(".rule")).to_have_text("D-01b")
    expect(survey.locator(".sla")).to_have_text("On track")
    task_id = survey.get_attribute("data-task-id")

    # Complete it: the list updates in place (htmx), the page is not reloaded.
    rm.evaluate("window.__sameDocument = true")
    survey.locator("summary", has_text="Complete").click()
    survey.locator("select[name=outcome]").select_option("contacted")
    survey.locator("textarea[name=note]").fill("Called back, happy with the service")
    # The RM records no scores on their own task: no one grades themselves (D-10).
    expect(survey.locator("input[name=attitude]")).to_have_count(0)
    survey.locator("button[type=submit]", has_text="Record and complete").click()
    expect(rm.locator("#work-list .notice")).to_have_text("Task completed.")
    expect(rm.locator(f"#task-{task_id}")).to_have_count(0)
    assert rm.evaluate("window.__sameDocument") is True
    shot(rm, screenshots, "flow-rm-after-completion")

    # The client page shows the satisfaction the client gave, as a chart.
    survey_answered(dev_stack, CLIENT, 88)
    rm.goto(f"{followup}/console/clients/{CLIENT}")
    expect(rm.locator("h1")).to_have_text(f"Client {CLIENT}")

    def chart_shown() -> bool:
        rm.reload()
        return rm.locator("svg.chart").count() == 1

    wait_until(chart_shown)
    expect(rm.locator("#timeline li").filter(has_text="followup.completed")).to_have_count(1)

    # The supervisor's board changes: one open task fewer, one done.
    def board_changed() -> dict[str, int] | None:
        counts = board_with_rm()
        if counts and counts["done"] == before["done"] + 1:
            return counts
        return None

    after = wait_until(board_changed)
    assert after["open"] == before["open"] - 1
    shot(supervisor, screenshots, "flow-supervisor-board-after")

    # The supervisor gives the RM's remaining task to a colleague, in place.
    supervisor.goto(f"{followup}/console/?assignee={RM}")
    revisit = supervisor.locator("#work-list tbody tr", has_text=CLIENT).first
    revisit_id = revisit.get_attribute("data-task-id")
    revisit.locator("summary", has_text="Reassign").click()
    revisit.locator("input[name=assignee]").fill(COLLEAGUE)
    revisit.locator("button[type=submit]", has_text="Reassign").click()
    expect(supervisor.locator("#work-list .notice")).to_have_text(f"Task given to {COLLEAGUE}.")
    expect(supervisor.locator(f"#task-{revisit_id}")).to_have_count(0)
    supervisor.goto(f"{followup}/console/?assignee={COLLEAGUE}")
    expect(supervisor.locator(f"#task-{revisit_id}")).to_have_count(1)

    # The D-12 measures download as CSV.
    csv = supervisor.context.request.get(f"{followup}/console/quality.csv?rm_id={RM}")
    assert csv.status == 200
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text().splitlines()
    assert lines[0] == "branch_id,rm_id,from,to,measure,key,value"
    assert any(",sla_compliance," in line or ",satisfaction," in line for line in lines[1:])

    # The auditor finds the completion in the trail and verifies its proof in the page.
    auditor = browser.new_context(locale="en-GB").new_page()
    login(auditor, audit, "auditor", "auditor-1")
    assert auditor.url.endswith("/console/trail")
    completed = auditor.locator('#trail tr[data-type="followup.completed"]')

    def in_trail() -> bool:
        auditor.goto(
            f"{audit}/console/trail?purpose=console+test&client_id={CLIENT}&type=followup.completed"
        )
        return completed.count() == 1

    wait_until(in_trail)
    completed.locator("a").click()
    expect(auditor.locator("h1")).to_contain_text("Entry #")
    auditor.click("#verify-button")
    expect(auditor.locator("#verifier")).to_have_attribute("data-verified", "true")
    steps = auditor.locator("#verify-steps li")
    expect(steps).to_have_count(5)
    for index in range(5):
        expect(steps.nth(index)).to_have_attribute("data-ok", "true")
    expect(auditor.locator("#verify-result")).to_have_text(
        "Verified in this browser: the entry is in the signed log."
    )
    shot(auditor, screenshots, "flow-auditor-verified")

    # The export downloads with its signed manifest; the read is recorded like every other.
    export = auditor.context.request.get(
        f"{audit}/console/export?purpose=console+test&client_id={CLIENT}&format=jsonl"
    )
    assert export.status == 200
    assert any(CLIENT in line for line in export.text().splitlines())

    # The read was recorded with its purpose (D-11): "who read what" shows it.
    auditor.goto(f"{audit}/console/reads?purpose=console+test&actor_id=auditor-1")
    expect(auditor.locator("#reads tbody tr").first).to_contain_text("console test")

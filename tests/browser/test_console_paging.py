"""The console's work list a page at a time in headless Chromium (#12): an RM with more
tasks than a page walks to page 2, completes a task there and stays on page 2; a form whose
cursor was altered is answered with the 400 fragment, which htmx swaps in place of the list
(``console.js``: a 4xx naming its target) so the RM sees it; a 400 that names no target
(a problem+json) is not swapped: the RM keeps the list; a note too long is the form's own
error, swapped in, the note marked on its task's form."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.console_support import (
    check_accessible,
    client_with_closed_visit,
    clients_with_closed_visits,
    login,
    problem_answer,
    shot,
    wait_until,
)
from tests.support.dev_stack import DevStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

RM = "rm-pages-1"
PAGE = 100  # the work list's page (rm_pages.PAGE_SIZE)


def cursor_of(page: Page) -> str:
    return parse_qs(urlsplit(page.url).query)["cursor"][0]


def an_rm_with_a_listed_task(
    dev_stack: DevStack, browser: Browser, client_id: str, rm_id: str
) -> tuple[Page, int, str]:
    """RM ``rm_id`` signed in (en-GB) once their work list shows the task of ``client_id``'s
    closed visit: the page, how many rows it lists, its first row's task id."""
    client_with_closed_visit(dev_stack, client_id, rm_id)
    rm = browser.new_context(locale="en-GB").new_page()
    login(rm, dev_stack.url("followup"), "rm", rm_id)

    def listed() -> bool:
        rm.reload()
        return rm.locator("#work-list tbody tr").count() >= 1

    wait_until(listed, within=120)
    task = rm.locator("#work-list tbody tr").first.get_attribute("data-task-id")
    assert task is not None
    return rm, rm.locator("#work-list tbody tr").count(), task


def test_an_rm_completes_a_task_on_page_two_and_stays_there(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    followup = dev_stack.url("followup")
    # a client whose visit closed, its tasks each: more than a page
    clients_with_closed_visits(dev_stack, [f"C-PAGES-{n:03d}" for n in range(PAGE + 3)], RM)
    rm = browser.new_context(locale="en-GB").new_page()
    login(rm, followup, "rm", RM)

    def all_listed() -> bool:
        rm.reload()
        return rm.locator("#work-list-next").count() == 1

    wait_until(all_listed, within=120)
    expect(rm.locator("#work-list tbody tr")).to_have_count(PAGE)

    # to page 2 (htmx, the address pushed): its rows, a link back to the first page
    rm.locator("#work-list-next").click()
    expect(rm.locator("#work-list-first")).to_be_visible()
    expect(rm).to_have_url(re.compile(r"cursor="))
    cursor = cursor_of(rm)
    rows = rm.locator("#work-list tbody tr")
    expect(rows.first).to_be_visible()
    back = rm.locator("#work-list-first").get_attribute("href")
    assert back is not None
    assert "cursor" not in back
    ids = [rows.nth(i).get_attribute("data-task-id") for i in range(2)]
    shot(rm, screenshots, "paging-page-2")

    # complete the first task of page 2: page 2 again, without it
    first = rm.locator(f"#task-{ids[0]}")
    first.locator("summary", has_text="Complete").click()
    first.locator("select[name=outcome]").select_option("contacted")
    first.locator("button[type=submit]").click()
    expect(rm.locator("#work-list .notice")).to_have_text("Task completed.")
    expect(rm.locator(f"#task-{ids[0]}")).to_have_count(0)
    expect(rm.locator("#work-list tbody tr").first).to_have_attribute("data-task-id", ids[1])
    expect(rm.locator("#work-list-first")).to_be_visible()
    fields = rm.locator("#work-list input[name=f_cursor]")
    assert {fields.nth(i).input_value() for i in range(fields.count())} == {cursor}
    shot(rm, screenshots, "paging-page-2-after-completing")

    # a form whose cursor was altered: the 400 fragment takes the list's place, said aloud
    second = rm.locator(f"#task-{ids[1]}")
    second.locator("summary", has_text="Complete").click()
    second.locator("input[name=f_cursor]").evaluate("(field) => { field.value = 'forged' }")
    second.locator("button[type=submit]").click()
    expect(rm.locator("#work-list-bad-cursor")).to_contain_text(
        "the cursor is malformed or altered"
    )
    expect(rm.locator("#work-list tbody tr")).to_have_count(0)
    shot(rm, screenshots, "paging-bad-cursor")
    rm.goto(f"{followup}/console/?cursor={cursor}")
    expect(rm.locator(f"#task-{ids[1]}")).to_have_count(1)  # nothing was recorded

    # to the last page of the surveys, through "Next page" (each links to the page before);
    # every task there completed: the RM lands on the page before it (its tasks, its address),
    # told why, never on an empty page with only a "First page" link
    # (the surveys alone: a completed revisit makes the next one, due later, on the last page)
    rm.goto(f"{followup}/console/?kind=satisfaction_survey")
    while rm.locator("#work-list-next").count():
        before_last = rm.url
        rm.locator("#work-list-next").click()
        expect(rm).not_to_have_url(before_last)
    expect(rm).to_have_url(re.compile(r"cursor="))  # a later page
    expect(rm.locator("#work-list-previous")).to_have_count(1 if "back=" in rm.url else 0)
    for _ in range(PAGE):
        if rm.locator("#work-list-went-back").count():
            break
        row = rm.locator("#work-list tbody tr").first
        done = row.get_attribute("data-task-id")
        row.locator("summary", has_text="Complete").click()
        row.locator("select[name=outcome]").select_option("contacted")
        row.locator("button[type=submit]").click()
        expect(rm.locator(f"#task-{done}")).to_have_count(0)
    expect(rm.locator("#work-list-went-back")).to_be_visible()
    expect(rm.locator("#work-list tbody tr")).to_have_count(PAGE)
    expect(rm).not_to_have_url(re.compile(r"cursor="))  # page 1's address (HX-Replace-Url)
    shot(rm, screenshots, "paging-emptied-last-page-lands-before-it")


def test_a_400_that_names_no_target_is_not_swapped_into_the_page(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    rm, listed_rows, task = an_rm_with_a_listed_task(
        dev_stack, browser, "C-PAGES-NOTARGET", "rm-pages-2"
    )

    # the completion is answered (by a test double) 400 problem+json without HX-Retarget:
    # any 4xx of a console page other than its own error fragment
    answered: list[str] = []
    problem = problem_answer(400, "Bad Request", seen=answered)
    rm.route("**/console/tasks/*/complete", problem)
    rm.evaluate(  # htmx decides on the swap right after this event, in the same task
        "document.body.addEventListener('htmx:beforeSwap', "
        "(e) => { document.body.dataset.beforeSwap = String(e.detail.xhr.status) })"
    )
    row = rm.locator(f"#task-{task}")
    row.locator("summary", has_text="Complete").click()
    row.locator("select[name=outcome]").select_option("contacted")
    row.locator("button[type=submit]").click()
    expect(rm.locator("body")).to_have_attribute("data-before-swap", "400")
    assert len(answered) == 1, answered
    # htmx handled the 400 and left the page as it was: the list, its task, no problem body;
    # the refusal said in the failure region, the problem's title as text
    expect(rm.locator("#work-list tbody tr")).to_have_count(listed_rows)
    expect(rm.locator(f"#task-{task}")).to_have_count(1)
    expect(rm.locator("main")).not_to_contain_text("Bad Request")
    expect(rm.locator("#console-failure")).to_contain_text("The server said: Bad Request")
    shot(rm, screenshots, "paging-400-without-target")


def test_a_failed_request_is_said_and_a_foreign_4xx_with_a_target_is_not_swapped(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    rm, listed_rows, task = an_rm_with_a_listed_task(
        dev_stack, browser, "C-PAGES-FAILS", "rm-pages-3"
    )
    failure = rm.locator("#console-failure")
    expect(failure).to_be_empty()
    expect(failure).to_have_attribute("aria-live", "assertive")

    def send_completion() -> None:
        row = rm.locator(f"#task-{task}")
        if not row.locator("details").first.evaluate("(d) => d.open"):
            row.locator("summary", has_text="Complete").click()
        row.locator("select[name=outcome]").select_option("contacted")
        row.locator("button[type=submit]").click()

    # a 4xx from elsewhere naming a target (HX-Retarget) but not the console's own fragment
    def foreign(route: Route) -> None:
        route.fulfill(
            status=400,
            headers={"HX-Retarget": "#work-list", "HX-Reswap": "outerHTML"},
            content_type="text/html",
            body='<section id="work-list"><p id="injected">injected</p></section>',
        )

    rm.route("**/console/tasks/*/complete", foreign)
    rm.evaluate(  # htmx decides on the swap right after this event, in the same task
        "document.body.addEventListener('htmx:afterRequest', "
        "(e) => { document.body.dataset.answered = String(e.detail.xhr.status) })"
    )
    send_completion()
    expect(rm.locator("body")).to_have_attribute("data-answered", "400")
    expect(rm.locator("#injected")).to_have_count(0)
    expect(rm.locator("#work-list tbody tr")).to_have_count(listed_rows)
    rm.unroute("**/console/tasks/*/complete")

    # a 5xx: said in the fixed region, the list as it was
    rm.route("**/console/tasks/*/complete", lambda route: route.fulfill(status=500, body="boom"))
    send_completion()
    expect(failure).to_contain_text("The server failed on this request")
    expect(failure).to_contain_text("HTTP 500")
    expect(rm.locator(f"#task-{task}")).to_have_count(1)
    expect(rm.locator("body")).not_to_contain_text("boom")
    shot(rm, screenshots, "paging-5xx-said")
    rm.unroute("**/console/tasks/*/complete")

    # no answer at all (the network down)
    rm.route("**/console/tasks/*/complete", lambda route: route.abort("connectionrefused"))
    send_completion()
    expect(failure).to_contain_text("No answer from the server")
    expect(rm.locator(f"#task-{task}")).to_have_count(1)
    shot(rm, screenshots, "paging-no-answer-said")
    rm.unroute("**/console/tasks/*/complete")

    # the RM tries again: done, and the message is gone
    send_completion()
    expect(rm.locator("#work-list .notice").first).to_have_text("Task completed.")
    expect(rm.locator(f"#task-{task}")).to_have_count(0)
    expect(failure).to_be_empty()


def test_a_refused_request_is_said_by_its_kind_and_nothing_is_swapped(
    dev_stack: DevStack, browser: Browser, screenshots: Path
) -> None:
    rm, listed_rows, task = an_rm_with_a_listed_task(
        dev_stack, browser, "C-PAGES-REFUSED", "rm-pages-4"
    )
    failure = rm.locator("#console-failure")
    expect(failure).to_be_empty()
    row = rm.locator(f"#task-{task}")

    def send_completion(outcome: str = "contacted") -> None:
        if not row.locator("details").first.evaluate("(d) => d.open"):
            row.locator("summary", has_text="Complete").click()
        row.locator("select[name=outcome]").select_option("contacted")
        if outcome != "contacted":  # a value the form never offers: FastAPI's own 422
            row.locator("select[name=outcome]").evaluate(
                "(select, value) => { select.add(new Option(value, value)); select.value = value }",
                outcome,
            )
        row.locator("button[type=submit]").click()

    def unchanged() -> None:
        expect(rm.locator("#work-list tbody tr")).to_have_count(listed_rows)
        expect(row).to_have_count(1)

    # FastAPI's 422 on a malformed field (an outcome longer than the form allows), real
    send_completion("x" * 65)
    expect(failure).to_contain_text("The request was refused: the page was not updated")
    expect(failure).to_contain_text("HTTP 422")
    unchanged()
    expect(rm.locator("body")).not_to_contain_text("string_too_long")
    shot(rm, screenshots, "paging-422-said")

    # a 403 problem+json (the session's token expired, a permission withdrawn): sign in again
    rm.route("**/console/tasks/*/complete", problem_answer(403, "Forbidden"))
    send_completion()
    expect(failure).to_contain_text("your session has ended or you may not do this")
    expect(failure).to_contain_text("The server said: Forbidden (HTTP 403)")
    unchanged()
    rm.unroute("**/console/tasks/*/complete")

    # a 409 problem+json whose title holds markup and is long: said as text, bounded
    title = "<b id='bold'>Task changed</b> " + "z" * 400

    conflict = problem_answer(409, title, headers={"HX-Retarget": "#work-list"})
    rm.route("**/console/tasks/*/complete", conflict)
    send_completion()
    expect(failure).to_contain_text("the task changed in the meantime")
    expect(failure).to_contain_text("<b id='bold'>Task changed</b>")
    expect(failure).to_contain_text("HTTP 409")
    expect(rm.locator("#bold")).to_have_count(0)
    said = failure.text_content() or ""
    assert "z" * 150 in said
    assert "z" * 200 not in said, said  # the server's text bounded (200 characters)
    unchanged()
    shot(rm, screenshots, "paging-409-said")
    rm.unroute("**/console/tasks/*/complete")

    # a note longer than the form takes (its maxlength removed, as a script may send it):
    # the action's own error in the swapped list, the task's form open, the note marked
    # with why, its value not shown again; nothing failed, so the region stays empty
    if not row.locator("details").first.evaluate("(d) => d.open"):
        row.locator("summary", has_text="Complete").click()
    note = row.locator("textarea[name=note]")
    note.evaluate("(area) => area.removeAttribute('maxlength')")
    note.fill("N" * 2001)
    row.locator("select[name=outcome]").select_option("contacted")
    row.locator("button[type=submit]").click()
    expect(rm.locator("#work-list p.error")).to_contain_text("a field is too long")
    marked = rm.locator(f"#note-{task}")
    expect(marked).to_be_visible()
    expect(marked).to_have_attribute("aria-invalid", "true")
    expect(marked).to_have_accessible_description(
        re.compile("^Left out: it was longer than the 2000 characters")
    )
    expect(marked).to_have_value("")
    expect(rm.locator("body")).not_to_contain_text("N" * 40)
    expect(failure).to_be_empty()
    unchanged()
    check_accessible(rm, "paging-note-too-long")
    shot(rm, screenshots, "paging-note-too-long")

    # the next request succeeds: done, and the message is gone
    send_completion()
    expect(rm.locator("#work-list .notice").first).to_have_text("Task completed.")
    expect(row).to_have_count(0)
    expect(failure).to_be_empty()

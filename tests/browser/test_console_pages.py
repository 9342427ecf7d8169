"""Every console page in Chinese and English: a screenshot of each (test artifacts), axe-core
finds no serious violation, the words are the locale's; the language switch; role checks
(an RM cannot open the auditor's pages nor another RM's client) and CSRF protection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.console_support import (
    check_accessible,
    client_event,
    client_with_closed_visit,
    login,
    send,
    shot,
    survey_answered,
    wait_until,
)
from tests.support.dev_stack import DevStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

RM = "rm-pages-1"
OTHER_RM = "rm-pages-2"
CLIENT = "C-PAGES-1"
OTHER_CLIENT = "C-PAGES-2"
LOCALES = {"zh": "zh-CN", "en": "en-GB"}
MY_DAY = {"zh": "今日工作", "en": "My day"}


@dataclass(frozen=True)
class Scenario:
    stack: DevStack
    open_task: str
    completed_position: int


@pytest.fixture(scope="module")
def scenario(dev_stack: DevStack) -> Scenario:
    """Two RMs' clients, a refused submission, one task completed (with scores) through the
    JSON API, its completion in the trail."""
    client_with_closed_visit(dev_stack, CLIENT, RM)
    client_with_closed_visit(dev_stack, OTHER_CLIENT, OTHER_RM)
    branch = dev_stack.token("branch_system", "queue-01", "BR-001")
    for event in (
        client_event(CLIENT, "client.consent_granted", {"purposes": ["service", "marketing"]}, 8),
        client_event(CLIENT, "client.consent_withdrawn", {"purposes": ["marketing"]}, 7),
        client_event(CLIENT, "client.risk_assessed", {"level": "C3"}, 6),
    ):
        accepted = send(dev_stack, branch, event)
        assert accepted.status_code == 202, accepted.text
    refused = send(
        dev_stack,
        branch,
        client_event(CLIENT, "product.recommended", {"product_id": "P-1", "product_risk": "R5"}, 5),
    )
    assert refused.status_code in (409, 422), refused.text
    rm = {"Authorization": f"Bearer {dev_stack.token('rm', RM)}"}
    followups = f"{dev_stack.url('followup')}/v1/followups"

    def tasks() -> list[dict[str, str]]:
        answer = httpx.get(followups, params={"client_id": CLIENT}, headers=rm, timeout=10)
        items: list[dict[str, str]] = answer.json()["items"]
        return items if len(items) >= 2 else []

    survey, other = sorted(wait_until(tasks), key=lambda t: t["kind"] != "satisfaction_survey")
    done = httpx.post(
        f"{followups}/{survey['id']}/complete",
        json={"outcome": "contacted"},
        headers=rm,
        timeout=10,
    )
    assert done.status_code == 200, done.text
    survey_answered(dev_stack, CLIENT, 75)

    def satisfaction() -> bool:
        view = httpx.get(
            f"{dev_stack.url('followup')}/v1/clients/{CLIENT}", headers=rm, timeout=10
        ).json()
        return bool(view.get("satisfaction_history"))

    wait_until(satisfaction)
    auditor = {"Authorization": f"Bearer {dev_stack.token('auditor', 'auditor-pages')}"}

    def completion() -> int | None:
        answer = httpx.get(
            f"{dev_stack.url('audit')}/v1/audit/entries",
            params={"client_id": CLIENT, "type": "followup.completed", "purpose": "test setup"},
            headers=auditor,
            timeout=10,
        )
        entries = answer.json()["entries"]
        return entries[0]["position"] if entries else None

    return Scenario(dev_stack, other["id"], wait_until(completion))


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def signed_in(
    browser: Browser, made: list[BrowserContext], base: str, role: str, sub: str, lang: str
) -> Page:
    context = browser.new_context(locale=LOCALES[lang])
    made.append(context)
    page = context.new_page()
    login(page, base, role, sub)
    return page


def visit(page: Page, url: str, folder: Path, name: str, lang: str) -> None:
    page.goto(url)
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if lang == "zh" else "en")
    shot(page, folder, f"{lang}-{name}")
    check_accessible(page, f"{lang} {name}")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_in_both_languages(
    scenario: Scenario,
    browser: Browser,
    contexts: list[BrowserContext],
    screenshots: Path,
    lang: str,
) -> None:
    followup, audit = scenario.stack.url("followup"), scenario.stack.url("audit")
    purpose = "quarterly+review"

    anonymous = browser.new_context(locale=LOCALES[lang])
    contexts.append(anonymous)
    login_page = anonymous.new_page()
    visit(login_page, f"{followup}/console/login", screenshots, "login", lang)

    rm = signed_in(browser, contexts, followup, "rm", RM, lang)
    visit(rm, f"{followup}/console/", screenshots, "rm-my-day", lang)
    expect(rm.locator("h1")).to_have_text(MY_DAY[lang])
    rm.locator(f"#task-{scenario.open_task} summary").first.click()
    shot(rm, screenshots, f"{lang}-rm-complete-form")
    check_accessible(rm, f"{lang} complete form")
    visit(rm, f"{followup}/console/?status=done", screenshots, "rm-done", lang)
    visit(rm, f"{followup}/console/clients/{CLIENT}", screenshots, "rm-client", lang)
    expect(rm.locator("svg.chart")).to_be_visible()
    expect(rm.locator("#consents tbody tr")).to_have_count(2)
    expect(rm.locator("#consents tr[data-purpose=marketing]")).to_have_attribute(
        "data-granted", "false"
    )
    expect(rm.locator("#assessment .sla-on_track")).to_have_count(1)
    timeline = rm.locator("#timeline li")
    expect(timeline.filter(has_text="client.risk_assessed")).to_have_count(1)
    expect(timeline.filter(has_text="followup.completed")).to_have_count(1)
    visit(rm, f"{followup}/console/team", screenshots, "rm-forbidden", lang)

    supervisor = signed_in(browser, contexts, followup, "supervisor", "supervisor", lang)
    visit(supervisor, f"{followup}/console/team", screenshots, "supervisor-team", lang)
    visit(supervisor, f"{followup}/console/?assignee={RM}", screenshots, "supervisor-list", lang)
    supervisor.locator(f"#task-{scenario.open_task} summary").nth(1).click()
    shot(supervisor, screenshots, f"{lang}-supervisor-reassign-form")
    visit(supervisor, f"{followup}/console/quality", screenshots, "supervisor-quality", lang)
    # Issue #15: the supervisor's own refusals page (not the audit service's, issue #10).
    visit(supervisor, f"{followup}/console/refusals", screenshots, "supervisor-own-refusals", lang)
    mine = f"#refusals tbody tr[data-client={CLIENT}]"
    refused = supervisor.locator(mine)
    expect(refused).to_have_count(1)
    expect(refused.locator("code")).to_have_text("product.recommended")
    rule = refused.get_attribute("data-rule")
    assert rule is not None, "a refusal names its rule"
    assert rule.startswith("D-"), rule
    supervisor.goto(f"{followup}/console/refusals?rule={rule}&branch_id=BR-001")
    expect(supervisor.locator(mine)).to_have_count(1)
    supervisor.goto(f"{followup}/console/refusals?rule={rule}&branch_id=BR-999")
    expect(supervisor.locator(mine)).to_have_count(0)
    login(supervisor, audit, "supervisor", "supervisor")
    visit(
        supervisor,
        f"{audit}/console/refusals?purpose={purpose}",
        screenshots,
        "supervisor-refusals",
        lang,
    )

    auditor = signed_in(browser, contexts, audit, "auditor", "auditor-pages", lang)
    visit(auditor, f"{audit}/console/trail", screenshots, "auditor-trail-form", lang)
    visit(
        auditor,
        f"{audit}/console/trail?purpose={purpose}&client_id={CLIENT}",
        screenshots,
        "auditor-trail",
        lang,
    )
    visit(
        auditor,
        f"{audit}/console/entries/{scenario.completed_position}?purpose={purpose}",
        screenshots,
        "auditor-entry",
        lang,
    )
    auditor.click("#verify-button")
    expect(auditor.locator("#verifier")).to_have_attribute("data-verified", "true")
    shot(auditor, screenshots, f"{lang}-auditor-entry-verified")
    check_accessible(auditor, f"{lang} entry verified")
    visit(auditor, f"{audit}/console/reads?purpose={purpose}", screenshots, "auditor-reads", lang)
    visit(
        auditor,
        f"{audit}/console/refusals?purpose={purpose}",
        screenshots,
        "auditor-refusals",
        lang,
    )
    expect(auditor.locator("#refusals tbody tr")).not_to_have_count(0)


def test_the_language_switch_overrides_the_browser(
    scenario: Scenario, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = signed_in(browser, contexts, scenario.stack.url("followup"), "rm", RM, "zh")
    expect(page.locator("h1")).to_have_text(MY_DAY["zh"])
    page.locator("button[name=locale][value=en]").click()
    expect(page.locator("h1")).to_have_text(MY_DAY["en"])
    page.reload()
    expect(page.locator("h1")).to_have_text(MY_DAY["en"])


def test_roles_sessions_and_csrf(
    scenario: Scenario, browser: Browser, contexts: list[BrowserContext]
) -> None:
    followup, audit = scenario.stack.url("followup"), scenario.stack.url("audit")

    stranger = browser.new_context(locale="en-GB")
    contexts.append(stranger)
    page = stranger.new_page()
    page.goto(f"{followup}/console/clients/{CLIENT}")
    assert "/console/login?next=" in page.url

    rm = signed_in(browser, contexts, followup, "rm", RM, "en")
    session = next(c for c in rm.context.cookies() if c["name"] == "bl_session_followup")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["secure"] is False  # plain http on loopback; Secure over TLS

    # An RM opens neither the auditor's pages nor another RM's client nor the team board.
    # The audit console has sessions of its own (its tokens are for its audience): the RM's
    # followup session opens nothing there, and an RM's token is no auditor's.
    for url in (
        f"{audit}/console/trail?purpose=curious",
        f"{audit}/console/entries/{scenario.completed_position}?purpose=curious",
        f"{audit}/console/reads?purpose=curious",
        f"{audit}/console/refusals?purpose=curious",
    ):
        answer = rm.goto(url)
        assert answer is not None, url
        assert answer.status == 403 or "/console/login" in rm.url, url
        expect(rm.locator("#trail, #reads, #refusals, #verifier")).to_have_count(0)
    for url in (
        f"{followup}/console/team",
        f"{followup}/console/quality",
        f"{followup}/console/refusals",
    ):
        answer = rm.goto(url)
        assert answer is not None, url
        assert answer.status == 403, url
        expect(rm.locator("h1")).to_contain_text("Not allowed")  # "(HTTP 403)" after it
    other = rm.goto(f"{followup}/console/clients/{OTHER_CLIENT}")
    assert other is not None
    assert other.status in (403, 404)  # out of scope: forbidden, or as if absent
    expect(rm.locator("main")).not_to_contain_text(OTHER_RM)
    assert rm.goto(f"{followup}/console/clients/{CLIENT}").status == 200  # type: ignore[union-attr]

    # A form post without the CSRF token, or with another one, changes nothing.
    complete = f"{followup}/console/tasks/{scenario.open_task}/complete"
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        refused = rm.context.request.post(complete, form={"outcome": "contacted"}, headers=headers)
        assert refused.status == 403
    refused = rm.context.request.post(
        complete, form={"outcome": "contacted", "csrf_token": "forged"}
    )
    assert refused.status == 403
    api = httpx.get(
        f"{followup}/v1/followups",
        params={"client_id": CLIENT, "status": "open"},
        headers={"Authorization": f"Bearer {scenario.stack.token('rm', RM)}"},
        timeout=10,
    )
    assert scenario.open_task in {t["id"] for t in api.json()["items"]}

    # Logging in needs the token of the login page too.
    login_post = stranger.request.post(
        f"{followup}/console/login", form={"role": "admin", "subject": "intruder"}
    )
    assert login_post.status == 403
    assert not [c for c in stranger.cookies() if c["name"].startswith("bl_session")]

    # The audit console is the auditors' alone (separation of duties in the access matrix).
    supervisor = signed_in(browser, contexts, audit, "supervisor", "supervisor", "en")
    assert supervisor.goto(f"{audit}/console/refusals?purpose=x").status == 403  # type: ignore[union-attr]
    assert supervisor.goto(f"{audit}/console/trail?purpose=x").status == 403  # type: ignore[union-attr]


def test_an_rm_completes_a_task_with_the_keyboard_alone(
    scenario: Scenario, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = signed_in(browser, contexts, scenario.stack.url("followup"), "rm", RM, "en")
    row = page.locator(f"#task-{scenario.open_task}")
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    summary = row.locator("summary", has_text="Complete")
    for _ in range(40):  # Tab through the page until the task's "Complete" has the focus
        page.keyboard.press("Tab")
        if summary.evaluate("node => node === document.activeElement"):
            break
    expect(summary).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(row.locator("select[name=outcome]")).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    page.keyboard.type("Reached on the phone")
    submit = row.locator("button[type=submit]", has_text="Record and complete")
    for _ in range(20):  # note, next contact, then the button
        if submit.evaluate("node => node === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(submit).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#work-list .notice")).to_have_text("Task completed.")
    expect(page.locator(f"#task-{scenario.open_task}")).to_have_count(0)

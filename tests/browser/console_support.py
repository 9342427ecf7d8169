"""Helpers of the console's browser tests: events sent to intake, login through the page,
bounded waits, screenshots and the axe-core check."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Route

from tests.support.dev_stack import DevStack

SERIOUS = {"serious", "critical"}
_axe = Axe()


def occurred(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def send(stack: DevStack, token: str, event: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stack.url('intake')}/v1/events",
        json=event,
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )


def client_event(
    client_id: str, type_: str, data: dict[str, Any], minutes_ago: float, branch: str = "BR-001"
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": occurred(minutes_ago),
        "client_id": client_id,
        "branch_id": branch,
        "channel": "walk_in",
        "actor": {"id": "staff-17", "role": "teller"},
        "data": data,
    }


def closed_visit(client_id: str, rm_id: str) -> list[dict[str, Any]]:
    """A client's registration and a visit of theirs, closed: a D-01b survey task is due."""
    visit = f"V-{client_id}"
    return [
        client_event(
            client_id, "client.registered", {"client_type": "individual", "rm_id": rm_id}, 30
        ),
        client_event(client_id, "visit.arrived", {"visit_id": visit}, 20),
        client_event(client_id, "visit.closed", {"visit_id": visit, "outcome": "normal"}, 10),
    ]


def clients_with_closed_visits(stack: DevStack, client_ids: list[str], rm_id: str) -> None:
    """Registered clients whose visits closed (:func:`closed_visit`), sent as one batch
    (``POST /v1/events:batch``, answered per event, in order): one request, not three a
    client (#12)."""
    token = stack.token("branch_system", "queue-01", "BR-001")
    events = [event for client_id in client_ids for event in closed_visit(client_id, rm_id)]
    answer = httpx.post(
        f"{stack.url('intake')}/v1/events:batch",
        json={"events": events},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    refused = [r for r in answer.json()["results"] if r.get("status") != 202]
    assert not refused, refused


def client_with_closed_visit(stack: DevStack, client_id: str, rm_id: str) -> None:
    clients_with_closed_visits(stack, [client_id], rm_id)


def survey_answered(stack: DevStack, client_id: str, score: int) -> None:
    """The client answers the satisfaction survey of their visit (D-10)."""
    token = stack.token("branch_system", "queue-01", "BR-001")
    scores = dict.fromkeys(
        ("attitude", "professionalism", "response_speed", "risk_management", "convenience"), score
    )
    event = client_event(
        client_id, "feedback.survey_answered", {"visit_id": f"V-{client_id}", "scores": scores}, 2
    )
    answer = send(stack, token, event)
    assert answer.status_code == 202, answer.text


def wait_until(probe: Callable[[], Any], within: float = 45.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        time.sleep(every)


DEV_SIGN_IN = "form:has(#role) button[type=submit]"
"""The dev login form's button (a token issued for a chosen role)."""


def fill_dev_login(page: Page, role: str, subject: str) -> None:
    """The dev login form filled in (on the login page), not sent."""
    page.select_option("#role", role)
    page.fill("#subject", subject)


def login(page: Page, base: str, role: str, subject: str) -> None:
    """The dev stack's login: a token issued for a chosen role."""
    page.goto(f"{base}/console/login")
    fill_dev_login(page, role, subject)
    page.locator(DEV_SIGN_IN).click()
    page.wait_for_load_state()
    assert "/console/login" not in page.url, page.content()


def chinese_page(browser: Browser) -> tuple[BrowserContext, Page]:
    """A new browser context in Chinese (zh-CN) and its page."""
    context = browser.new_context(locale="zh-CN")
    return context, context.new_page()


def signed_in_chinese(
    browser: Browser, base: str, role: str, subject: str
) -> tuple[BrowserContext, Page]:
    """A Chinese context's page signed in to the console at ``base`` (:func:`login`)."""
    context, page = chinese_page(browser)
    login(page, base, role, subject)
    return context, page


def problem_answer(
    status: int,
    title: str,
    *,
    headers: dict[str, str] | None = None,
    seen: list[str] | None = None,
) -> Callable[[Route], None]:
    """A route's test double: a problem+json of ``status`` and ``title`` (``headers`` added),
    each request's address noted in ``seen``."""

    def answer(route: Route) -> None:
        if seen is not None:
            seen.append(route.request.url)
        route.fulfill(
            status=status,
            headers=headers or {},
            content_type="application/problem+json",
            body=json.dumps({"type": "about:blank", "title": title, "status": status}),
        )

    return answer


def check_accessible(page: Page, name: str) -> None:
    """axe-core (the copy pinned in axe-playwright-python) finds no serious violation."""
    results = _axe.run(page)
    serious = [v for v in results.response["violations"] if v.get("impact") in SERIOUS]
    assert not serious, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in serious
    )


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

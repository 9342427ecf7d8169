"""A D-15 refusal (a suitability review completed without the client warned) is recorded
once per request: the same request sent again with its key (the API's ``Idempotency-Key``,
the console form's own) after its answer was lost, a 503 ``outcome-unknown`` or a double
submit is refused again and not recorded again; another attempt (no key, another key, another
submission) is recorded as before (#12, docs/followup.md)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from branchline_followup.bootstrap import create_app, running_worker
from branchline_shared.console.web import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.followup.harness import History, now_utc, produce_events
from tests.support.proxy import CuttableProxy, cuttable
from tests.support.stack import eventually, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REFUSALS = (
    "SELECT count(*) FROM es_events WHERE type = 'rule.violation_refused' "
    "AND stream_id = 'followup-task-' || $1"
)


@dataclass
class Review:
    client: httpx.AsyncClient  # the API as rm-7
    proxy: CuttableProxy
    task_id: str  # rm-7's open D-15 suitability review
    url: str
    tokens: TokenFactory


@pytest.fixture
async def review(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Review]:
    """A client's tolerance lowered below a holding's rating: a review due for rm-7; the API
    through a cuttable proxy (the worker on the database itself)."""
    target = urlsplit(settings.followup_database_url)
    async with (
        running_worker(settings),
        cuttable(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
    ):
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        through = settings.model_copy(
            update={"followup_database_url": urlunsplit(target._replace(netloc=netloc))}
        )
        client_id = f"C-{uuid.uuid4().hex[:8]}"
        h = History()
        start = now_utc() - timedelta(days=3)
        h.registered(client_id, start)
        h.add("client.risk_assessed", client_id, start, {"level": "C3"})
        sale = {"product_id": "P-FUND-9", "amount": "1000", "product_risk": "R3"}
        h.add("product.sold", client_id, start + timedelta(days=1), sale)
        h.add("client.risk_assessed", client_id, start + timedelta(days=2), {"level": "C1"})
        await produce_events(settings, h.events)
        async with (
            serve(create_app(through)) as url,
            httpx.AsyncClient(
                base_url=url, headers=tokens.headers(Role.RM, sub="rm-7"), timeout=60
            ) as client,
        ):

            async def found() -> str | None:
                page = (
                    await client.get(
                        "/v1/followups",
                        params={"kind": "suitability_review", "client_id": client_id},
                    )
                ).json()
                return str(page["items"][0]["id"]) if page["items"] else None

            yield Review(client, proxy, await eventually(found, within=60), url, tokens)


async def refusals(settings: BranchlineSettings, task_id: str) -> int:
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        count: int = await conn.fetchval(REFUSALS, task_id)
        return count
    finally:
        await conn.close()


def refused_by_d15(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    body: dict[str, Any] = response.json()
    assert body["rule"] == "D-15", body
    assert [e["field"] for e in body["errors"]] == ["client_warned"]


NOT_WARNED = {"outcome": "contacted", "note": "not reached yet"}


async def test_a_d15_refusal_sent_again_with_its_key_is_recorded_once(
    review: Review, settings: BranchlineSettings
) -> None:
    path = f"/v1/followups/{review.task_id}/complete"
    keyed = {"Idempotency-Key": "app-7f3a"}
    for _ in range(2):
        refused_by_d15(await review.client.post(path, json=NOT_WARNED, headers=keyed))
    assert await refusals(settings, review.task_id) == 1  # old: 2, the key ignored
    # another key, another submission under the key, no key: each a new attempt, recorded
    refused_by_d15(
        await review.client.post(path, json=NOT_WARNED, headers={"Idempotency-Key": "app-7f3b"})
    )
    refused_by_d15(
        await review.client.post(path, json={**NOT_WARNED, "outcome": "other"}, headers=keyed)
    )
    for _ in range(2):
        refused_by_d15(await review.client.post(path, json=NOT_WARNED))
    assert await refusals(settings, review.task_id) == 5
    bad = await review.client.post(path, json=NOT_WARNED, headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 422, bad.text
    assert "Idempotency-Key" in bad.text
    done = await review.client.post(path, json={**NOT_WARNED, "client_warned": True}, headers=keyed)
    assert done.status_code == 200, done.text


async def test_a_d15_refusal_whose_commit_is_lost_sent_again_is_recorded_once(
    review: Review, settings: BranchlineSettings
) -> None:
    """The refusal's ``COMMIT`` lost with the database: ``outcome-unknown`` (it had been
    recorded); the same request sent again with its key is refused, not recorded again."""
    path = f"/v1/followups/{review.task_id}/complete"
    keyed = {"Idempotency-Key": "app-lost-1"}
    trap = review.proxy.trap(b"violation_refused", delivered=True, refuse=True)
    unknown = await review.client.post(path, json=NOT_WARNED, headers=keyed)
    assert trap.sprung.is_set()
    assert unknown.status_code == 503, unknown.text
    assert unknown.json()["type"] == "https://branchline.dev/problems/outcome-unknown"
    assert await refusals(settings, review.task_id) == 1
    await review.proxy.restore()
    refused_by_d15(await review.client.post(path, json=NOT_WARNED, headers=keyed))
    assert await refusals(settings, review.task_id) == 1  # old: 2


async def test_a_console_form_submitted_twice_records_its_d15_refusal_once(
    review: Review, settings: BranchlineSettings
) -> None:
    """The complete form carries a key made when it is shown: submitted twice (a double
    click, a resend after its page was lost), one refusal; a form shown again is a new
    attempt, recorded."""
    async with httpx.AsyncClient(base_url=review.url, timeout=60) as console:
        console.cookies.set(f"{SESSION_COOKIE}_followup", review.tokens.token(Role.RM, sub="rm-7"))
        console.cookies.set(CSRF_COOKIE, "csrf-1")
        console.headers.update({CSRF_HEADER: "csrf-1", "accept-language": "en"})

        async def form_key() -> str:
            page = await console.get("/console/", params={"kind": "suitability_review"})
            assert page.status_code == 200, page.text
            marker = 'name="request_key" value="'
            start = page.text.index(marker) + len(marker)
            return page.text[start : page.text.index('"', start)]

        key = await form_key()
        pages = [
            await console.post(
                f"/console/tasks/{review.task_id}/complete",
                data={**NOT_WARNED, "request_key": key},
                headers={"hx-request": "true"},
            )
            for _ in range(2)
        ]
        for page in pages:
            assert page.status_code == 200, page.text
            assert "The task was not completed" in page.text
        assert await refusals(settings, review.task_id) == 1  # old: 2
        again = await form_key()
        assert again != key
        await console.post(
            f"/console/tasks/{review.task_id}/complete",
            data={**NOT_WARNED, "request_key": again},
            headers={"hx-request": "true"},
        )
    assert await refusals(settings, review.task_id) == 2


async def test_a_review_is_completed_from_the_console_once_the_client_was_warned(
    review: Review, settings: BranchlineSettings
) -> None:
    """The complete form of a D-15 review has the box the API's ``client_warned`` is: ticked,
    the review is done (old: the form had no such field, every console completion of a review
    was refused and recorded); unticked, refused as by the API."""
    async with httpx.AsyncClient(base_url=review.url, timeout=60) as console:
        console.cookies.set(f"{SESSION_COOKIE}_followup", review.tokens.token(Role.RM, sub="rm-7"))
        console.cookies.set(CSRF_COOKIE, "csrf-1")
        console.headers.update({CSRF_HEADER: "csrf-1", "accept-language": "en"})
        shown = await console.get("/console/", params={"kind": "suitability_review"})
        assert f'id="warned-{review.task_id}"' in shown.text
        path = f"/console/tasks/{review.task_id}/complete"
        unticked = await console.post(path, data=NOT_WARNED, headers={"hx-request": "true"})
        assert "The task was not completed" in unticked.text
        assert "client_warned" in unticked.text
        ticked = await console.post(
            path, data={**NOT_WARNED, "client_warned": "true"}, headers={"hx-request": "true"}
        )
        assert ticked.status_code == 200, ticked.text
        assert "Task completed." in ticked.text
    task = (await review.client.get("/v1/followups", params={"status": "done"})).json()
    assert [t["id"] for t in task["items"]] == [review.task_id]
    assert await refusals(settings, review.task_id) == 1

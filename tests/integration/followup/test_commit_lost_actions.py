"""An RM's action whose connection is lost while its ``COMMIT`` is under way is answered by
what the database holds, asked on a fresh connection (#12, docs/reliability.md, "A database
fault"): done when it committed, 503 ``unavailable`` when it did not, 503 ``outcome-unknown``
when the database cannot be asked. Until Round 24 all three were ``unavailable`` "nothing was
stored", and a completion that had committed, sent again, was refused as a closed task.

The cut is timed by the suite's proxy on the action's own connection: the one that writes the
``followup.completed`` envelope (it names the task), at its ``COMMIT``."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from branchline_followup.adapters.pg_schemas import BEGIN_HOLDING_SWAP_LOCK
from branchline_followup.bootstrap import create_app, running_worker
from branchline_shared.console.web import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from branchline_shared.http.auth import Role
from branchline_shared.http.problems import PROBLEM_JSON
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.followup.harness import History, now_utc, produce_events
from tests.support.proxy import CuttableProxy, cuttable
from tests.support.stack import eventually, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COMPLETIONS = (
    "SELECT e.event_id, (SELECT count(*) FROM es_outbox o WHERE o.event_id = e.event_id) "
    "AS outbox FROM es_events e WHERE e.type = 'followup.completed' "
    "AND e.envelope -> 'data' ->> 'task_id' = $1"
)


UNIT_ENDS = re.compile(rb"Q.{4}(COMMIT|ROLLBACK)", re.DOTALL)
"""A unit's end, committed or rolled back (simple queries, as ``begin`` sends them)."""


@dataclass
class Served:
    client: httpx.AsyncClient  # the API as rm-7
    proxy: CuttableProxy
    task_id: str  # rm-7's survey task for a new client
    url: str
    tokens: TokenFactory


@pytest.fixture
async def rm(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Served]:
    """The API through a cuttable proxy (the worker on the database itself)."""
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
        history = History()
        start = now_utc() - timedelta(hours=3)
        history.registered(client_id, start)
        history.visit(client_id, f"V-{client_id}", start + timedelta(minutes=1))
        await produce_events(settings, history.events)
        async with (
            serve(create_app(through)) as url,
            httpx.AsyncClient(
                base_url=url, headers=tokens.headers(Role.RM, sub="rm-7"), timeout=60
            ) as client,
        ):

            async def survey() -> str | None:
                page = (
                    await client.get(
                        "/v1/followups",
                        params={"kind": "satisfaction_survey", "client_id": client_id},
                    )
                ).json()
                return str(page["items"][0]["id"]) if page["items"] else None

            yield Served(client, proxy, await eventually(survey, within=60), url, tokens)


async def completions(settings: BranchlineSettings, task_id: str) -> list[tuple[Any, int]]:
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        return [(r["event_id"], r["outbox"]) for r in await conn.fetch(COMPLETIONS, task_id)]
    finally:
        await conn.close()


def complete(client: httpx.AsyncClient, task_id: str) -> Any:
    return client.post(f"/v1/followups/{task_id}/complete", json={"outcome": "contacted"})


def problem(response: httpx.Response, kind: str) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://branchline.dev/problems/{kind}", body
    return body


async def test_a_completion_whose_commit_answer_is_lost_is_answered_done(
    rm: Served, settings: BranchlineSettings
) -> None:
    client, proxy, task_id = rm.client, rm.proxy, rm.task_id
    trap = proxy.trap(task_id.encode(), delivered=True)
    done = await complete(client, task_id)
    assert trap.sprung.is_set()
    assert done.status_code == 200, done.text  # old: 503 "nothing was stored"
    assert done.json()["status"] == "done"
    [(_, outbox)] = await completions(settings, task_id)
    assert outbox == 1


async def test_a_completion_whose_commit_never_arrived_is_unavailable(
    rm: Served, settings: BranchlineSettings
) -> None:
    client, proxy, task_id = rm.client, rm.proxy, rm.task_id
    trap = proxy.trap(task_id.encode(), delivered=False)
    refused = await complete(client, task_id)
    assert trap.sprung.is_set()
    assert "nothing was stored" in problem(refused, "unavailable")["detail"]
    assert await completions(settings, task_id) == []
    again = await complete(client, task_id)  # as the answer says: sent again, done once
    assert again.status_code == 200, again.text
    assert len(await completions(settings, task_id)) == 1


async def test_a_completion_lost_with_the_database_is_outcome_unknown(
    rm: Served, settings: BranchlineSettings
) -> None:
    client, proxy, task_id = rm.client, rm.proxy, rm.task_id
    trap = proxy.trap(task_id.encode(), delivered=True, refuse=True)
    unknown = await complete(client, task_id)
    assert trap.sprung.is_set()
    detail = problem(unknown, "outcome-unknown")["detail"]
    assert "unknown" in detail
    # old: "read what is stored before sending an action again", for these too (#12)
    assert "complete and reassign sent again as they were are answered as they were" in detail
    [(event_id, outbox)] = await completions(settings, task_id)  # it had committed
    assert outbox == 1
    await proxy.restore()
    # The same completion sent again is answered with the task as it is, done (old: 409
    # task-closed, the RM could not tell their completion from another's); nothing is
    # applied twice. Another completion of the closed task is still refused (docs/api.md).
    again = await complete(client, task_id)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "done"
    other = await client.post(f"/v1/followups/{task_id}/complete", json={"outcome": "other"})
    assert other.status_code == 409, other.text
    assert other.json()["type"] == "https://branchline.dev/problems/task-closed"
    assert await completions(settings, task_id) == [(event_id, 1)]


async def test_a_console_completion_lost_with_the_database_does_not_say_nothing_changed(
    rm: Served, settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    trap = rm.proxy.trap(rm.task_id.encode(), delivered=True, refuse=True)
    async with httpx.AsyncClient(base_url=rm.url, timeout=60) as console:
        console.cookies.set(f"{SESSION_COOKIE}_followup", tokens.token(Role.RM, sub="rm-7"))
        console.cookies.set(CSRF_COOKIE, "csrf-1")
        console.headers.update({CSRF_HEADER: "csrf-1", "accept-language": "en"})
        page = await console.post(
            f"/console/tasks/{rm.task_id}/complete",
            data={"outcome": "contacted"},
            headers={"hx-request": "true"},
        )
    assert trap.sprung.is_set()
    assert page.status_code == 503, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert int(page.headers["retry-after"]) > 0
    assert "it may have been saved" in page.text  # old: "nothing was changed", and it was
    assert "nothing was changed" not in page.text
    # the complete form is safe to send again (answered as it was, recorded once): the page
    # says so (old: "Look before doing it again", as for any change) (#12)
    assert "It is safe to do it again" in page.text
    assert "Look before doing it again" not in page.text
    assert len(await completions(settings, rm.task_id)) == 1


async def test_a_completion_sent_again_is_answered_as_the_first_was(
    rm: Served, settings: BranchlineSettings
) -> None:
    """A resend of the same completion (its answer lost on the way back, say) gets the first
    answer's body; by another member of staff, or with another outcome, it is refused as a
    closed task. One ``followup.completed`` stands (old: the resend was 409 task-closed)."""
    body = {"outcome": "contacted", "note": "call back on Friday", "client_warned": False}
    first = await rm.client.post(f"/v1/followups/{rm.task_id}/complete", json=body)
    assert first.status_code == 200, first.text
    again = await rm.client.post(f"/v1/followups/{rm.task_id}/complete", json=body)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    async with httpx.AsyncClient(
        base_url=rm.url, headers=rm.tokens.headers(Role.SUPERVISOR, sub="sup-1"), timeout=60
    ) as supervisor:
        theirs = await supervisor.post(f"/v1/followups/{rm.task_id}/complete", json=body)
    assert theirs.status_code == 409, theirs.text
    assert theirs.json()["type"] == "https://branchline.dev/problems/task-closed"
    changed = await rm.client.post(
        f"/v1/followups/{rm.task_id}/complete", json={**body, "note": "call back on Monday"}
    )
    assert changed.status_code == 409, changed.text
    assert len(await completions(settings, rm.task_id)) == 1


async def test_a_console_completion_submitted_twice_shows_the_done_task(
    rm: Served, settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    """A double submit of the console's complete form (or a resend after its page was
    lost): the second shows the task completed, not "The task was not completed" (old)."""
    async with httpx.AsyncClient(base_url=rm.url, timeout=60) as console:
        console.cookies.set(f"{SESSION_COOKIE}_followup", tokens.token(Role.RM, sub="rm-7"))
        console.cookies.set(CSRF_COOKIE, "csrf-1")
        console.headers.update({CSRF_HEADER: "csrf-1", "accept-language": "en"})
        pages = [
            await console.post(
                f"/console/tasks/{rm.task_id}/complete",
                data={"outcome": "contacted", "note": "left a message"},
                headers={"hx-request": "true"},
            )
            for _ in range(2)
        ]
        plain = await console.post(
            f"/console/tasks/{rm.task_id}/complete",
            data={"outcome": "contacted", "note": "left a message"},
        )
    for page in pages:
        assert page.status_code == 200, page.text
        assert "Task completed." in page.text
        assert "The task was not completed" not in page.text
    assert plain.status_code in (302, 303), plain.text
    assert plain.headers["location"].endswith("/console/?status=open&done=1")  # its page
    assert len(await completions(settings, rm.task_id)) == 1


async def test_a_reassignment_to_the_same_assignee_whose_unit_end_is_lost_is_answered(
    rm: Served, settings: BranchlineSettings
) -> None:
    """A task given to the assignee it has changes nothing and appends no event: the unit
    is rolled back, so its answer (the task as it is) does not hang on a ``COMMIT`` whose
    loss could not be asked about. Cut at the unit's end (old: its ``COMMIT``, 503)."""
    trap = rm.proxy.trap(uuid.UUID(rm.task_id).bytes, at=UNIT_ENDS, delivered=True)
    async with httpx.AsyncClient(
        base_url=rm.url, headers=rm.tokens.headers(Role.SUPERVISOR, sub="sup-1"), timeout=60
    ) as supervisor:
        same = await supervisor.post(
            f"/v1/followups/{rm.task_id}/reassign", json={"assignee": "rm-7"}
        )
        assert trap.sprung.is_set()
        assert same.status_code == 200, same.text  # old: 503 "nothing was stored"
        assert same.json()["assignee"] == "rm-7"
        moved = await supervisor.post(
            f"/v1/followups/{rm.task_id}/reassign", json={"assignee": "rm-8"}
        )
        assert moved.status_code == 200, moved.text  # the connection lost was not kept


async def test_a_unit_of_read_models_only_whose_commit_is_lost_is_outcome_unknown(
    rm: Served, settings: BranchlineSettings
) -> None:
    """The test clock's move runs units that change only read models (timers due, stage
    changes), with no event id to ask the store by: a lost ``COMMIT`` there may have stored
    rows, so it is ``outcome-unknown``, not ``unavailable`` "nothing was stored" (old)."""
    trap = rm.proxy.trap(BEGIN_HOLDING_SWAP_LOCK.encode(), delivered=True)
    async with httpx.AsyncClient(
        base_url=rm.url, headers=rm.tokens.headers(Role.ADMIN, sub="admin-1"), timeout=60
    ) as admin:
        moved = await admin.post("/v1/dev/clock", json={"advance_seconds": 0})
    assert trap.sprung.is_set()
    assert "unknown" in problem(moved, "outcome-unknown")["detail"]


async def test_a_completion_recorded_under_catalogue_v1_is_compared_as_it_was_sent(
    rm: Served, settings: BranchlineSettings
) -> None:
    """A completion recorded before the catalogue's v2 (its ``outcome`` free text, read as
    ``other`` since): ``other`` sent now is not that completion, 409 task-closed (old: 200,
    compared with the upcast reading); a v1 text that was a code is answered (#12)."""
    body = {"outcome": "other", "note": "left a message"}
    first = await rm.client.post(f"/v1/followups/{rm.task_id}/complete", json=body)
    assert first.status_code == 200, first.text
    conn = await asyncpg.connect(settings.followup_database_url)
    try:

        async def recorded_at_v1(outcome: str) -> None:
            """As written before v2 (the store is append-only: its trigger off, as the test
            server's superuser, for this test's own record)."""
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(
                    "UPDATE es_events SET envelope = jsonb_set(jsonb_set(envelope, "
                    "'{schema_version}', '1'), '{data,outcome}', to_jsonb($2::text)) "
                    "WHERE type = 'followup.completed' "
                    "AND envelope -> 'data' ->> 'task_id' = $1",
                    rm.task_id,
                    outcome,
                )

        await recorded_at_v1("rang the client, keeps the fund")
        resent = await rm.client.post(f"/v1/followups/{rm.task_id}/complete", json=body)
        assert resent.status_code == 409, resent.text
        assert resent.json()["type"] == "https://branchline.dev/problems/task-closed"
        await recorded_at_v1("other")
        again = await rm.client.post(f"/v1/followups/{rm.task_id}/complete", json=body)
        assert again.status_code == 200, again.text
    finally:
        await conn.close()
    assert len(await completions(settings, rm.task_id)) == 1

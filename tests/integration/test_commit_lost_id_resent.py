"""A lost ``COMMIT`` whose event id another writer stored meanwhile: the answer is the
idempotency rules' for a resend, not a 202 for the other writer's event (Round 25, #12,
docs/reliability.md, "A database fault").

The request's write (its guessed self-committing statement, its group's ``COMMIT``, or its
batch's) is cut by the suite's proxy before it reaches the server, so nothing of it is
stored. In the gap between the loss and the store's answer (after the lost session has
ended, before the rows are looked for) a second intake process on the same database
stores the same ``event_id``: with another body (a registration of another client), or
with the same body (the same submission resent). The store is then asked; until Round 25
it was asked whether the ids were there, found the other writer's row, and answered 202
with that writer's position (with another body: the id is another event's, the caller
should be told 409 ``idempotency-conflict``), or, when the transaction wrote other events
too, 503 ``outcome-unknown`` (some of "its" rows there, some not)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.http.auth import Role
from branchline_shared.postgres import commit_outcome
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_commit_lost import overrides, stored, through_proxy
from tests.support.events import registration_body
from tests.support.proxy import COMMIT
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# single-with-id: the guessed group's one statement; single-ordinary: the group's shared
# transaction (an intake that guesses nothing); batch: the batch's own transaction.
PATHS = ["single-with-id", "single-ordinary", "batch"]


def registration(correlation: str, event_id: uuid.UUID) -> dict[str, Any]:
    body = registration_body(
        f"C-{uuid.uuid4().hex[:8]}", event_id, datetime.now(UTC).replace(microsecond=0)
    )
    body["correlation_id"] = correlation
    return body


async def send(client: httpx.AsyncClient, path: str, *bodies: dict[str, Any]) -> httpx.Response:
    if path == "batch":
        return await client.post("/v1/events:batch", json={"events": list(bodies)})
    (body,) = bodies
    return await client.post("/v1/events", json=body)


def answers(path: str, response: httpx.Response) -> list[tuple[int, dict[str, Any]]]:
    """Each event's status and body (a batch's results, or the single answer)."""
    if path == "batch":
        assert response.status_code == 200, response.text
        return [(r["status"], r) for r in response.json()["results"]]
    return [(response.status_code, response.json())]


@contextlib.asynccontextmanager
async def another_intake(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """A second intake process on the same database, not behind the proxy."""
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=60
        ) as client,
    ):
        yield client


def resent_in_the_gap(
    monkeypatch: pytest.MonkeyPatch, other: httpx.AsyncClient, body: dict[str, Any]
) -> list[httpx.Response]:
    """Once the lost session has ended (its transaction can no longer commit, and holds no
    id), before the store is asked what it holds: ``body`` is sent to the other intake."""
    ended = commit_outcome._ended
    sent: list[httpx.Response] = []

    async def ended_then_resent(conn: Any, session: int) -> bool:
        done = await ended(conn, session)
        if not sent:
            sent.append(await other.post("/v1/events", json=body))
        return done

    monkeypatch.setattr(commit_outcome, "_ended", ended_then_resent)
    return sent


async def positions(settings: BranchlineSettings, event_id: str) -> list[tuple[str, int, int]]:
    """The stored event under ``event_id`` (its stream, its position) and its outbox rows."""
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, global_position, (SELECT count(*) FROM es_outbox o "
            "WHERE o.event_id = e.event_id) AS outbox FROM es_events e WHERE event_id = $1",
            uuid.UUID(event_id),
        )
    finally:
        await conn.close()
    return [(r["stream_id"], r["global_position"], r["outbox"]) for r in rows]


@pytest.mark.parametrize("path", PATHS)
async def test_an_id_another_writer_stored_with_another_body_is_an_idempotency_conflict(
    settings: BranchlineSettings,
    tokens: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    event_id = uuid.uuid4()
    correlation = f"id-resent-{uuid.uuid4()}"
    mine = registration(correlation, event_id)
    theirs = registration(f"id-resent-{uuid.uuid4()}", event_id)  # another client, same id
    async with (
        through_proxy(settings, tokens, **overrides(path)) as (client, proxy),
        another_intake(settings, tokens) as other,
    ):
        sent = resent_in_the_gap(monkeypatch, other, theirs)
        at = None if path == "single-with-id" else COMMIT
        trap = proxy.trap(correlation.encode(), at=at, delivered=False)
        response = await send(client, path, mine)
        assert trap.sprung.is_set()
        [resent] = sent
        assert resent.status_code == 202, resent.text
        # Old: 202 with the other writer's position (under this request's stream id).
        [(status, answer)] = answers(path, response)
        assert status == 409, answer
        assert answer["type"].endswith("/idempotency-conflict"), answer
        assert await stored(settings, correlation) == []  # nothing of this request
        [(stream_id, position, outbox)] = await positions(settings, str(event_id))
        assert (stream_id, position, outbox) == (
            resent.json()["stream_id"],
            resent.json()["global_position"],
            1,
        )
        assert stream_id == f"client-{theirs['client_id']}"


async def test_a_guessed_write_whose_id_was_resent_with_the_same_body_is_the_duplicate(
    settings: BranchlineSettings, tokens: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same submission resent by another writer in the gap: 202 at that writer's
    position, stored once. The old code answered the same (it took the row for its own),
    so this guards the new answer's path (the guess found wrong, decided the ordinary
    way), it does not fail on the old code."""
    event_id = uuid.uuid4()
    correlation = f"id-resent-{uuid.uuid4()}"
    mine = registration(correlation, event_id)
    async with (
        through_proxy(settings, tokens) as (client, proxy),
        another_intake(settings, tokens) as other,
    ):
        sent = resent_in_the_gap(monkeypatch, other, mine)
        trap = proxy.trap(correlation.encode(), at=None, delivered=False)
        response = await send(client, "single", mine)
        assert trap.sprung.is_set()
        [resent] = sent
        assert resent.status_code == 202, resent.text
        assert response.status_code == 202, response.text
        assert response.json() == resent.json()
        assert await stored(settings, correlation) == [(str(event_id), 1)]


@pytest.mark.parametrize("path", ["single-ordinary", "batch"])
async def test_a_transaction_whose_one_id_was_resent_with_the_same_body_is_answered_whole(
    settings: BranchlineSettings,
    tokens: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """One transaction wrote two events (a batch of two, or two callers joined in one
    group); the first one's submission is resent by another writer in the gap. Old: that
    writer's row taken for the transaction's own, the other event's missing: "part of one
    transaction stored", 503 ``outcome-unknown`` for both. Now: the transaction did not
    commit; run again, the resent event is the duplicate at the other writer's position,
    the other is stored."""
    first = registration(f"id-resent-{uuid.uuid4()}", uuid.uuid4())
    second = registration(f"id-resent-{uuid.uuid4()}", uuid.uuid4())
    window = {"intake_group_commit_window_ms": 500} if path == "single-ordinary" else {}
    async with (
        through_proxy(settings, tokens, **overrides(path), **window) as (client, proxy),
        another_intake(settings, tokens) as other,
    ):
        sent = resent_in_the_gap(monkeypatch, other, first)
        trap = proxy.trap(first["correlation_id"].encode(), delivered=False)
        if path == "batch":
            results = answers(path, await send(client, path, first, second))
        else:
            both = await asyncio.gather(send(client, path, first), send(client, path, second))
            results = [answers(path, r)[0] for r in both]
        assert trap.sprung.is_set()
        [resent] = sent
        assert resent.status_code == 202, resent.text
        assert [status for status, _ in results] == [202, 202], results
        assert results[0][1]["global_position"] == resent.json()["global_position"]
        for body, (_, answer) in zip((first, second), results, strict=True):
            assert answer["event_id"] == body["event_id"]
            assert await stored(settings, body["correlation_id"]) == [(body["event_id"], 1)]

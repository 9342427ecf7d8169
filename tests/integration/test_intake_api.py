"""Intake over real HTTP, on a real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.http.auth import Role, utcnow
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.events import registration_body
from tests.support.stack import eventually, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


OCCURRED = datetime(2026, 11, 22, 9, tzinfo=timezone(timedelta(hours=8)))


def registration(client_id: str = "C-10001", **extra: Any) -> dict[str, Any]:
    return registration_body(client_id, None, OCCURRED, **extra)


async def stored_count(settings: BranchlineSettings) -> int:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM es_events"))
    finally:
        await conn.close()


@pytest.fixture
async def intake(settings: BranchlineSettings, tokens: TokenFactory) -> Any:
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=10
        ) as client,
    ):
        yield client


async def test_accepts_an_event_and_answers_its_place(intake: httpx.AsyncClient) -> None:
    response = await intake.post("/v1/events", json=registration())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["stream_id"] == "client-C-10001"
    assert body["stream_version"] == 1
    assert body["global_position"] >= 1
    uuid.UUID(body["event_id"])

    stream = await intake.get("/v1/streams/client-C-10001/events")
    assert stream.status_code == 200
    (event,) = stream.json()["events"]
    assert event["event_id"] == body["event_id"]
    assert event["occurred_at"] == "2026-11-22T01:00:00Z"  # stored in UTC (ADR-0008)
    assert event["source"] == "intake"


async def test_same_event_id_twice_in_a_row_stores_one(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    event = registration(event_id=str(uuid.uuid4()))
    first = await intake.post("/v1/events", json=event)
    second = await intake.post("/v1/events", json=event)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert await stored_count(settings) == 1


async def test_same_event_id_concurrently_stores_one(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    event = registration(event_id=str(uuid.uuid4()))
    answers = await asyncio.gather(*[intake.post("/v1/events", json=event) for _ in range(20)])
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["global_position"] for a in answers}) == 1
    assert await stored_count(settings) == 1


async def test_event_id_reused_for_other_content_is_refused(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    event_id = str(uuid.uuid4())
    assert (
        await intake.post("/v1/events", json=registration(event_id=event_id))
    ).status_code == 202
    other = registration(event_id=event_id, client_id="C-20002")
    response = await intake.post("/v1/events", json=other)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "event_id"
    assert await stored_count(settings) == 1


async def test_expected_version_mismatch_is_409_with_current_version(
    intake: httpx.AsyncClient,
) -> None:
    assert (await intake.post("/v1/events", json=registration())).status_code == 202
    stale = registration(expected_version=0)
    stale["type"] = "client.registered"
    response = await intake.post("/v1/events", json=stale)
    assert response.status_code == 409
    assert response.json()["current_version"] == 1


async def test_concurrent_writers_with_expected_version_exactly_one_wins(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    answers = await asyncio.gather(
        *[intake.post("/v1/events", json=registration(expected_version=0)) for _ in range(10)]
    )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(202) == 1
    assert await stored_count(settings) == 1


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda e: e["data"].update(client_type="alien"), 422, "data.client_type"),
        (lambda e: e["data"].pop("rm_id"), 422, "data.rm_id"),
        (lambda e: e.update(occurred_at="2026-11-22T09:00:00"), 422, "occurred_at"),
        (lambda e: e.update(type="visit.teleported"), 422, "type"),
        (lambda e: e.update(client_id=123), 422, "client_id"),
        (lambda e: e.update(channel="pigeon"), 422, "channel"),
        (lambda e: e.update(surprise=True), 422, "surprise"),
        (lambda e: e["actor"].pop("id"), 422, "actor.id"),
    ],
    ids=[
        "wrong-enum",
        "missing-field",
        "naive-datetime",
        "unknown-type",
        "wrong-type",
        "bad-channel",
        "unknown-field",
        "missing-actor-id",
    ],
)
async def test_bad_event_is_422_naming_the_field_and_stores_nothing(
    intake: httpx.AsyncClient, settings: BranchlineSettings, mutate: Any, status: int, field: str
) -> None:
    event = registration()
    mutate(event)
    response = await intake.post("/v1/events", json=event)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert field in [e["field"] for e in problem["errors"]]
    assert await stored_count(settings) == 0


async def test_malformed_json_is_400(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    response = await intake.post(
        "/v1/events",
        content=b'{"type": "client.registered",',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert await stored_count(settings) == 0


async def test_body_too_large_is_413(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    event = registration()
    event["data"]["note"] = "x" * (settings.max_body_bytes + 10)
    response = await intake.post("/v1/events", json=event)
    assert response.status_code == 413
    assert response.json()["status"] == 413
    assert await stored_count(settings) == 0


async def test_missing_token_is_401(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    response = await intake.post("/v1/events", json=registration(), headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert await stored_count(settings) == 0


async def test_expired_token_is_401(
    intake: httpx.AsyncClient, settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    expired = tokens.codec.issue(
        "x",
        [Role.BRANCH_SYSTEM],
        ttl=timedelta(hours=1),
        now=utcnow() - timedelta(hours=2),
        audiences=tokens.audiences,
    )
    response = await intake.post(
        "/v1/events", json=registration(), headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert await stored_count(settings) == 0


async def test_token_signed_with_another_secret_is_401(intake: httpx.AsyncClient) -> None:
    from branchline_shared.http.auth import TokenCodec

    forged = TokenCodec.hs256(
        "another-secret-" + "y" * 40, issuer="branchline", audience="branchline:intake"
    ).issue("x", [Role.ADMIN], ttl=timedelta(hours=1), now=utcnow())
    response = await intake.post(
        "/v1/events", json=registration(), headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401


async def test_auditor_may_not_write_events(
    intake: httpx.AsyncClient, tokens: TokenFactory, settings: BranchlineSettings
) -> None:
    response = await intake.post(
        "/v1/events", json=registration(), headers=tokens.headers(Role.AUDITOR)
    )
    assert response.status_code == 403
    assert await stored_count(settings) == 0


async def test_operations_endpoints_need_no_token(intake: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        response = await intake.get(path, headers={"Authorization": ""})
        assert response.status_code == 200, path
    assert (await intake.get("/readyz")).json()["checks"] == {
        "postgres": True,
        "kafka": True,
        "keys": True,
    }


async def test_unknown_stream_is_404_problem(intake: httpx.AsyncClient) -> None:
    response = await intake.get("/v1/streams/client-nobody/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.chaos
async def test_database_unreachable_is_503_and_nothing_half_written(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    from urllib.parse import urlsplit, urlunsplit

    from tests.support.proxy import cuttable

    target = urlsplit(settings.intake_database_url)
    async with cuttable(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        via_proxy = settings.model_copy(
            update={"intake_database_url": urlunsplit(target._replace(netloc=netloc))}
        )
        async with (
            serve(create_app(via_proxy)) as url,
            httpx.AsyncClient(
                base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=30
            ) as client,
        ):
            event = registration(event_id=str(uuid.uuid4()))
            await proxy.cut()
            refused = await client.post("/v1/events", json=event)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == "2"
            assert (await client.get("/readyz")).status_code == 503
            await proxy.restore()
            accepted = await client.post("/v1/events", json=event)
            assert accepted.status_code == 202, accepted.text

            async def published() -> bool:
                conn = await asyncpg.connect(settings.intake_database_url)
                try:
                    return bool(
                        await conn.fetchval(
                            "SELECT bool_and(published_at IS NOT NULL) FROM es_outbox"
                        )
                    )
                finally:
                    await conn.close()

            # the relay lost its lock with its connection, took it again, and published
            await eventually(published, within=30)
    assert await stored_count(settings) == 1


async def test_concurrent_batches_of_the_same_new_clients_register_each_once(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    """#12: batches registering the same new clients at once (their streams created by
    whichever comes first; the others wait on its creation and then see its events): every
    client's registration is accepted once, at version 1, the others refused by the rules,
    each stream's version is its last event's, and no client has a version 1 twice."""
    clients = [f"C-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    bodies = [
        {"events": [registration(c) for c in (clients if i % 2 else clients[::-1])]}
        for i in range(6)
    ]
    answers = await asyncio.gather(*[intake.post("/v1/events:batch", json=b) for b in bodies])
    assert {a.status_code for a in answers} == {200}
    accepted: dict[str, list[int]] = {c: [] for c in clients}
    for answer, body in zip(answers, bodies, strict=True):
        for item, sent in zip(answer.json()["results"], body["events"], strict=True):
            if item["status"] == 202:
                assert item["stream_id"] == f"client-{sent['client_id']}"
                accepted[sent["client_id"]].append(item["stream_version"])
            else:
                assert item["status"] == 409, item  # registered by another batch (a rule)
                assert item["title"] == "Client already registered", item
    assert accepted == {c: [1] for c in clients}
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT e.stream_id, count(*) AS n, max(e.stream_version) AS last, s.version "
            "FROM es_events e JOIN es_streams s USING (stream_id) "
            "WHERE e.stream_id = ANY($1::text[]) GROUP BY e.stream_id, s.version",
            [f"client-{c}" for c in clients],
        )
    finally:
        await conn.close()
    assert len(rows) == len(clients)
    assert all(r["n"] == 1 and r["last"] == 1 and r["version"] == 1 for r in rows)

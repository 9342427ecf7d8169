"""Who speaks (docs/access-control.md): bad tokens are 401 problems, the authenticated
submitter is recorded on every accepted event, and an actor the token may not speak for is
refused with nothing stored."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.http.auth import Role, utcnow
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.consumers import audit_consumer
from tests.support.stack import eventually, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def event(
    client_id: str, *, actor: dict[str, str], branch: str = "BR-001", **data: Any
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": data.pop("type", "client.registered"),
        "occurred_at": utcnow().isoformat(),
        "client_id": client_id,
        "branch_id": branch,
        "channel": "walk_in",
        "actor": actor,
        "data": data or {"client_type": "individual", "rm_id": "rm-7"},
    }


TELLER = {"id": "teller-1", "role": "teller"}


async def rows(settings: BranchlineSettings, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.fixture
async def intake(settings: BranchlineSettings) -> AsyncIterator[str]:
    async with serve(create_app(settings)) as url:
        yield url


def _bad_tokens(tokens: TokenFactory) -> dict[str, str]:
    secret = tokens.settings.resolved_jwt_secret()
    now = int(utcnow().timestamp())
    good: dict[str, Any] = {
        "sub": "queue-01",
        "roles": ["branch_system"],
        "branch_id": "BR-001",
        "iss": "branchline",
        "aud": tokens.audiences,
        "iat": now,
        "exp": now + 600,
    }

    def sign(claims: dict[str, Any], key: str = secret, kid: str = "k1") -> str:
        return jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid})

    def without(name: str) -> dict[str, Any]:
        return {k: v for k, v in good.items() if k != name}

    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    cases = {
        "wrong signature": sign(good, key="another-secret-" + "y" * 40),
        "alg none": f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(good)}.",
        "expired": sign({**good, "iat": now - 7200, "exp": now - 3600}),
        "not yet valid": sign({**good, "iat": now + 3600, "exp": now + 7200}),
        "empty sub": sign({**good, "sub": ""}),
        "sub with whitespace": sign({**good, "sub": "queue 01"}),
        "too long a lifetime": sign({**good, "exp": now + 13 * 3600}),
        "year 9999": sign({**good, "exp": 253402300799}),
        "unknown kid": sign(good, kid="k-retired"),
        "another service's audience": sign({**good, "aud": ["branchline:audit"]}),
        "garbage": "not-a-jwt",
    }
    for claim in ("sub", "exp", "iat", "iss", "aud", "roles"):
        cases[f"missing {claim}"] = sign(without(claim))
    return cases


async def test_every_bad_token_and_header_is_a_401_problem_and_stores_nothing(
    intake: str, tokens: TokenFactory, settings: BranchlineSettings
) -> None:
    headers = {f"token: {name}": f"Bearer {t}" for name, t in _bad_tokens(tokens).items()}
    headers |= {
        "empty header": "",
        "scheme only": "Bearer",
        "basic": "Basic cXVldWU6MDE=",
        "two tokens": "Bearer a b",
        "huge": "Bearer " + "x" * 9000,
    }
    async with httpx.AsyncClient(base_url=intake, timeout=10) as http:
        for name, header in headers.items():
            response = await http.post(
                "/v1/events",
                json=event("C-T1", actor=TELLER),
                headers={"Authorization": header} if header else {},
            )
            assert response.status_code == 401, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json", name
            assert response.headers["www-authenticate"] == "Bearer", name
            assert response.json()["status"] == 401, name
    assert await rows(settings, "SELECT 1 FROM es_events") == []


async def test_the_submitter_is_stored_published_and_in_the_trail(
    intake: str, tokens: TokenFactory, settings: BranchlineSettings
) -> None:
    branch = tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01", branch="BR-001")
    async with audit_consumer(settings) as ledger, httpx.AsyncClient(base_url=intake) as http:
        sent = event("C-S1", actor=TELLER)
        assert (await http.post("/v1/events", json=sent, headers=branch)).status_code == 202
        [stored] = await rows(
            settings,
            "SELECT envelope FROM es_events WHERE event_id = $1",
            uuid.UUID(sent["event_id"]),
        )
        envelope = (
            json.loads(stored["envelope"])
            if isinstance(stored["envelope"], str)
            else stored["envelope"]
        )
        expected = {"sub": "queue-01", "roles": ["branch_system"], "branch_id": "BR-001"}
        assert envelope["submitted_by"] == expected
        assert envelope["actor"] == TELLER  # the declared actor, next to who really sent it

        async def in_trail() -> dict[str, Any] | None:
            async for entry in ledger.scan():
                if entry.event["event_id"] == sent["event_id"]:
                    return dict(entry.event)
            return None

        recorded = await eventually(in_trail, within=30)  # came over the Kafka topic
        assert recorded["submitted_by"] == expected

        # A read of the client's stream is itself recorded: who, what, why (D-11).
        read = await http.get(
            "/v1/streams/client-C-S1/events", params={"purpose": "checking a visit"}, headers=branch
        )
        assert read.status_code == 200
        [record] = await rows(
            settings, "SELECT envelope FROM es_events WHERE type = 'client.data_read'"
        )
        body = (
            json.loads(record["envelope"])
            if isinstance(record["envelope"], str)
            else record["envelope"]
        )
        assert body["client_id"] == "C-S1"
        assert body["submitted_by"] == expected
        assert body["data"] == {
            "service": "intake",
            "route": "GET /v1/streams/{stream_id}/events",
            "purpose": "checking a visit",
        }


async def test_an_actor_the_token_may_not_speak_for_is_refused_and_nothing_stored(
    intake: str, tokens: TokenFactory, settings: BranchlineSettings
) -> None:
    branch = tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01", branch="BR-001")
    rm7 = tokens.headers(Role.RM, sub="rm-7")
    async with httpx.AsyncClient(base_url=intake) as http:
        for client, rm in (("C-A1", "rm-7"), ("C-B1", "rm-8")):
            registered = event(client, actor=TELLER, client_type="individual", rm_id=rm)
            assert (
                await http.post("/v1/events", json=registered, headers=branch)
            ).status_code == 202
        before = len(await rows(settings, "SELECT 1 FROM es_events"))
        complaint = {
            "type": "complaint.received",
            "complaint_id": "K-1",
            "severity": "general",
            "summary": "x",
        }
        cases: list[tuple[str, dict[str, str], dict[str, Any], int, str]] = [
            (
                "RM as the client",
                rm7,
                event("C-A1", actor={"id": "C-A1", "role": "client"}, **dict(complaint)),
                403,
                "actor",
            ),
            (
                "RM as its supervisor",
                rm7,
                event("C-A1", actor={"id": "sup-1", "role": "supervisor"}, **dict(complaint)),
                403,
                "actor",
            ),
            (
                "RM as another RM",
                rm7,
                event("C-A1", actor={"id": "rm-8", "role": "rm"}, **dict(complaint)),
                403,
                "actor",
            ),
            (
                "RM for another RM's client",
                rm7,
                event("C-B1", actor={"id": "rm-7", "role": "rm"}, **dict(complaint)),
                404,
                "",
            ),
            (
                "RM registering for another RM",
                rm7,
                event(
                    "C-N1",
                    actor={"id": "rm-7", "role": "rm"},
                    client_type="individual",
                    rm_id="rm-8",
                ),
                404,
                "",
            ),
            (
                "RM named like a supervisor",
                tokens.headers(Role.RM, sub="supervisor"),
                event(
                    "C-N2",
                    actor={"id": "supervisor", "role": "rm"},
                    client_type="individual",
                    rm_id="supervisor",
                ),
                404,
                "",
            ),
            (
                "branch system without a branch",
                tokens.headers(Role.BRANCH_SYSTEM, sub="q", branch=None)
                | {
                    "Authorization": "Bearer "
                    + tokens.codec.issue(
                        "q",
                        [Role.BRANCH_SYSTEM],
                        ttl=timedelta(minutes=5),
                        now=utcnow(),
                        audiences=tokens.audiences,
                    )
                },
                event("C-A1", actor=TELLER, **dict(complaint)),
                403,
                "branch_id",
            ),
            (
                "branch system for another branch",
                branch,
                event("C-A1", actor=TELLER, branch="BR-002", **dict(complaint)),
                403,
                "branch_id",
            ),
            (
                "branch system as another client",
                branch,
                event("C-A1", actor={"id": "C-B1", "role": "client"}, **dict(complaint)),
                403,
                "actor.id",
            ),
            (
                "branch system as an admin",
                branch,
                event("C-A1", actor={"id": "admin-1", "role": "admin"}, **dict(complaint)),
                403,
                "actor.role",
            ),
            (
                "auditor",
                tokens.headers(Role.AUDITOR, sub="aud-1"),
                event("C-A1", actor={"id": "aud-1", "role": "auditor"}, **dict(complaint)),
                403,
                "",
            ),
        ]
        for name, headers, body, status, field in cases:
            response = await http.post("/v1/events", json=body, headers=headers)
            assert response.status_code == status, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json", name
            if field:
                assert response.json()["errors"][0]["field"] == field, name
            batch = await http.post("/v1/events:batch", json={"events": [body]}, headers=headers)
            if batch.status_code == 200:
                assert batch.json()["results"][0]["status"] == status, name
        # what the tokens may do still works
        own = event("C-A1", actor={"id": "rm-7", "role": "rm"}, **dict(complaint))
        assert (await http.post("/v1/events", json=own, headers=rm7)).status_code == 202
        as_client = event(
            "C-A1",
            actor={"id": "C-A1", "role": "client"},
            type="client.consent_granted",
            purposes=["service"],
        )
        assert (await http.post("/v1/events", json=as_client, headers=branch)).status_code == 202
    stored = await rows(
        settings, "SELECT type FROM es_events WHERE type <> 'rule.violation_refused'"
    )
    assert len(stored) == before + 2  # the refused ones stored nothing

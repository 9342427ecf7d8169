"""Abuse limits on a real intake (docs/access-control.md): rate limits answer 429 with
Retry-After and store nothing; security headers on every answer; ``/docs`` from packaged
assets; the access log names the route template and who called, never a query value."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.events.envelope import Actor
from branchline_shared.http.auth import Role, utcnow
from tests.conftest import TokenFactory
from tests.support.events import registration_body
from tests.support.stack import Infra, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TELLER = Actor(id="teller-1", role="teller")


def registration(client_id: str) -> dict[str, Any]:
    return registration_body(client_id, uuid.uuid4(), utcnow(), actor=TELLER)


async def test_rate_limit_is_429_with_retry_after_and_stores_nothing(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path, rate_limit_token_burst=3, rate_limit_token_per_s=0.2)
    tokens = TokenFactory(settings)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        one = tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01")
        sent = [registration(f"C-R{i}") for i in range(4)]
        answers = [await http.post("/v1/events", json=e, headers=one) for e in sent]
        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["status"] == 429
        assert refused.headers["x-content-type-options"] == "nosniff"
        # another token is counted on its own
        other = tokens.headers(Role.BRANCH_SYSTEM, sub="queue-02")
        assert (
            await http.post("/v1/events", json=registration("C-R9"), headers=other)
        ).status_code == 202
        assert (await http.get("/healthz")).status_code == 200  # never limited
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        stored = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM es_events")}
    finally:
        await conn.close()
    assert uuid.UUID(sent[-1]["event_id"]) not in stored
    assert {uuid.UUID(e["event_id"]) for e in sent[:3]} <= stored


async def test_headers_docs_and_access_log(
    infra: Infra, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(infra, tmp_path)
    tokens = TokenFactory(settings)
    secret_purpose = "PLANTED-PURPOSE-7f3a"
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        branch = tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01")
        assert (
            await http.post("/v1/events", json=registration("C-H1"), headers=branch)
        ).status_code == 202
        with caplog.at_level(logging.INFO, logger="branchline.access"):
            read = await http.get(
                "/v1/streams/client-C-H1/events",
                params={"purpose": secret_purpose},
                headers={**branch, "x-correlation-id": "corr-123"},
            )
            unauthenticated = await http.get("/v1/streams/client-C-H1/events")
        assert read.status_code == 200
        for answer in (read, unauthenticated):
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-store"
        assert unauthenticated.status_code == 401

        docs = await http.get("/docs")
        assert docs.status_code == 200
        csp = docs.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "http://" not in docs.text
        assert "https://" not in docs.text
        for asset in (
            "/docs/assets/swagger-ui-bundle.js",
            "/docs/assets/swagger-ui.css",
            "/docs/init.js",
        ):
            assert (await http.get(asset)).status_code == 200, asset

    lines = [r for r in caplog.records if r.name == "branchline.access"]
    entry = next(r for r in lines if getattr(r, "correlation_id", None) == "corr-123")
    assert entry.route == "/v1/streams/{stream_id}/events"  # type: ignore[attr-defined]
    assert entry.status == 200  # type: ignore[attr-defined]
    assert entry.sub == "queue-01"  # type: ignore[attr-defined]
    assert entry.branch_id == "BR-001"  # type: ignore[attr-defined]
    assert entry.latency_ms >= 0  # type: ignore[attr-defined]
    assert any(getattr(r, "status", None) == 401 for r in lines)
    for record in lines:
        assert secret_purpose not in str(vars(record))
        assert "C-H1" not in str(vars(record))  # the raw path is never logged

"""The published event schemas over intake's HTTP API, on the real stack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.events.catalogue import CATALOGUE_VERSION
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.fixture
async def intake_url(settings: BranchlineSettings) -> AsyncIterator[str]:
    async with serve(create_app(settings)) as url:
        yield url


@pytest.mark.parametrize("role", list(Role))
async def test_every_role_lists_the_schemas(
    intake_url: str, tokens: TokenFactory, role: Role
) -> None:
    async with httpx.AsyncClient(base_url=intake_url, headers=tokens.headers(role)) as client:
        response = await client.get("/v1/schemas")
    assert response.status_code == 200, response.text
    body = response.json()
    listed = {(s["type"], s["version"]) for s in body["schemas"]}
    assert listed == set(CATALOGUE_VERSION.items())
    sold = next(s for s in body["schemas"] if s["type"] == "product.sold")
    assert sold == {
        "type": "product.sold",
        "version": 1,
        "current": True,
        "$id": "https://branchline.dev/schemas/events/product.sold/v1.json",
        "url": "/v1/schemas/product.sold/v1",
    }
    assert body["envelope"]["url"] == "/v1/schemas/envelope"


async def test_each_listed_schema_is_served_as_committed(
    intake_url: str, tokens: TokenFactory
) -> None:
    async with httpx.AsyncClient(
        base_url=intake_url, headers=tokens.headers(Role.AUDITOR)
    ) as client:
        listing = (await client.get("/v1/schemas")).json()
        for entry in listing["schemas"]:
            response = await client.get(entry["url"])
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("application/schema+json")
            committed = REPO_SCHEMAS / "events" / entry["type"] / f"v{entry['version']}.json"
            assert response.json() == json.loads(committed.read_text())
            assert response.json()["$id"] == entry["$id"]
        envelope = await client.get(listing["envelope"]["url"])
    assert envelope.status_code == 200
    assert envelope.json() == json.loads((REPO_SCHEMAS / "envelope.json").read_text())


@pytest.mark.parametrize(
    "path",
    [
        "/v1/schemas/visit.teleported/v1",
        "/v1/schemas/product.sold/v2",
        "/v1/schemas/product.sold/v0",
        "/v1/schemas/product.sold/vlatest",
        "/v1/schemas/product.sold/v99999999999999999999",
    ],
)
async def test_an_unknown_type_or_version_is_a_404_problem(
    intake_url: str, tokens: TokenFactory, path: str
) -> None:
    async with httpx.AsyncClient(base_url=intake_url, headers=tokens.headers(Role.RM)) as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 404
    assert problem["type"].endswith("/schema-not-found")
    assert "GET /v1/schemas" in problem["detail"]


@pytest.mark.parametrize("path", ["/v1/schemas", "/v1/schemas/product.sold/v1"])
async def test_the_schemas_need_a_valid_token(intake_url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=intake_url) as client:
        anonymous = await client.get(path)
        forged = await client.get(path, headers={"Authorization": "Bearer not.a.token"})
    assert anonymous.status_code == 401
    assert forged.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")

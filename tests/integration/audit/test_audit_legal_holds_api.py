"""D-11 legal holds over real HTTP: placed and lifted by an auditor as recorded entries (who
and why), listed, shown in the trail; refusals are problems; an RM may not place one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from branchline_audit.bootstrap import create_app
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import quick_settings
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
async def client(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(quick_settings(settings))) as url,
        httpx.AsyncClient(
            base_url=url, timeout=30, headers=tokens.headers(Role.AUDITOR, sub="auditor-7")
        ) as http,
    ):
        yield http


async def test_d11_a_hold_placed_then_lifted_is_in_the_trail(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    body: dict[str, Any] = {
        "client_id": "C-77",
        "hold_id": "LH-1",
        "reason": "regulatory_investigation",
        "case_reference": "CSRC-2026-9",
    }
    placed = await client.post("/v1/audit/legal-holds?purpose=inquiry", json=body)
    assert placed.status_code == 201, placed.text
    assert placed.json()["hold"]["placed_by"] == "auditor-7"
    again = await client.post("/v1/audit/legal-holds", json=body)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["rule"] == "D-11"
    bad = await client.post("/v1/audit/legal-holds", json={**body, "reason": "because"})
    assert bad.status_code == 422
    listed = (await client.get("/v1/audit/legal-holds", params={"client_id": "C-77"})).json()
    assert [h["hold_id"] for h in listed["holds"]] == ["LH-1"]

    rm = tokens.headers(Role.RM, sub="rm-7")
    assert (await client.post("/v1/audit/legal-holds", json=body, headers=rm)).status_code == 403

    lifted = await client.post("/v1/audit/legal-holds/LH-1/lift", json={"reason": "matter_closed"})
    assert lifted.status_code == 200, lifted.text
    assert (await client.get("/v1/audit/legal-holds")).json()["holds"] == []
    gone = await client.post("/v1/audit/legal-holds/LH-1/lift", json={"reason": "other"})
    assert gone.status_code == 404

    trail = (
        await client.get("/v1/audit/entries", params={"client_id": "C-77", "type": "audit.*"})
    ).json()
    entries = [e["event"] for e in trail["entries"] if e["event"]["type"].startswith("audit.legal")]
    assert [(e["type"], e["actor"]["id"], e["data"]["reason"]) for e in entries] == [
        ("audit.legal_hold_placed", "auditor-7", "regulatory_investigation"),
        ("audit.legal_hold_lifted", "auditor-7", "matter_closed"),
    ]

"""ADR-0007: personal values are stored and published only as AES-256-GCM ciphertext under
the client's data key, from the first event that carries them."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.crypto.keystore import PostgresClientKeyStore
from branchline_shared.crypto.sealing import MasterKey, is_sealed, unseal_paths
from branchline_shared.http.auth import Role
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_intake_api import registration
from tests.support.kafka import read_all
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PLANTED = {"name": "Wang Fang", "id_number": "110101199003070021", "phone": "+86 138 0013 8000"}


def step(event_type: str, data: dict[str, Any], at: str) -> dict[str, Any]:
    event = registration()
    event.update(type=event_type, occurred_at=at, data=data)
    return event


async def test_planted_personal_values_appear_nowhere_in_clear_and_open_with_the_key(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    journey = [
        registration(),
        step("client.consent_granted", {"purposes": ["service"]}, "2026-11-22T09:01:00+08:00"),
        step(
            "client.personal_data_recorded",
            {"fields": PLANTED, "purpose": "service"},
            "2026-11-22T09:02:00+08:00",
        ),
    ]
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=10
        ) as intake,
    ):
        for event in journey:
            response = await intake.post("/v1/events", json=event)
            assert response.status_code == 202, response.text

        conn = await asyncpg.connect(settings.intake_database_url)
        try:
            raw_rows = await conn.fetch(
                "SELECT envelope::text AS t, submission_hash FROM es_events"
            )
            dump = " ".join(r["t"] for r in raw_rows)
            stored = await conn.fetchval(
                "SELECT envelope FROM es_events WHERE type = 'client.personal_data_recorded'"
            )
        finally:
            await conn.close()
        messages = await read_all(
            settings.kafka_bootstrap, declare_topics(settings).intake_events.name, expect=3
        )

    wire = b" ".join(m.value or b"" for m in messages)
    for value in PLANTED.values():
        assert value not in dump
        assert value.encode() not in wire
        assert base64.b64encode(value.encode()).decode() not in dump

    import orjson

    sealed = orjson.loads(stored)["data"]
    assert set(sealed["fields"]) == set(PLANTED)  # which fields: readable; their values: not
    assert all(is_sealed(v) for v in sealed["fields"].values())

    pool = await open_pool(settings.keys_database_url)
    try:
        keys = PostgresClientKeyStore(pool, MasterKey(settings.resolved_master_key()))
        key = await keys.existing_key("C-10001")
        assert key is not None
        clear = unseal_paths(sealed, ("fields",), key, client_id="C-10001")
        assert clear["fields"] == PLANTED
        wrapped = await pool.fetchval("SELECT wrapped_key FROM pii_client_keys")
        assert key.secret not in bytes(wrapped)  # stored only wrapped by the master key
    finally:
        await pool.close()

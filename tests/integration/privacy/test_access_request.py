"""D-04 access request: the client's personal data in clear, with provenance, recorded as
accessed, closing the access-request task the request made due."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import orjson
import pytest

from branchline_shared.crypto.sealing import is_sealed
from branchline_shared.events.catalogue import PERSONAL_FIELDS
from branchline_shared.http.auth import Role
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.privacy.privacy_support import (
    PLANTED_FIELDS,
    PLANTED_SUMMARY,
    at,
    planted_journey,
    privacy_stack,
    submission,
)
from tests.support.kafka import read_all
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_access_request_answered_in_clear_recorded_and_its_task_closed(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    client = "C-ACCESS-1"
    async with privacy_stack(settings, tokens) as stack:
        for event in planted_journey(client):
            await stack.send(event)
        request = await stack.send(
            submission(
                client,
                "client.data_access_requested",
                at(10),
                {"channel": "online"},
            )
        )

        async def access_task() -> list[dict[str, object]] | None:
            return await stack.tasks(client, "data_access_request") or None

        (task,) = await eventually(access_task)
        assert task["rule"] == "D-04"
        assert task["assignee"] == "privacy-officer"
        assert task["source_event_id"] == request["event_id"]
        requested_at = datetime.fromisoformat(at(10))
        assert datetime.fromisoformat(str(task["due_at"])) == requested_at + timedelta(days=15)

        url = f"/v1/clients/{client}/personal-data"
        # Who may ask, and why: admin only, with a stated purpose.
        missing = await stack.followup.get(url)
        assert missing.status_code == 422
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert (await stack.followup.get(url, params={"purpose": "   "})).status_code == 422
        for role in (Role.RM, Role.SUPERVISOR, Role.AUDITOR, Role.BRANCH_SYSTEM):
            denied = await stack.followup.get(
                url, params={"purpose": "curious"}, headers=stack.as_(role, "someone")
            )
            assert denied.status_code == 403, (role, denied.text)
        unknown = await stack.followup.get(
            "/v1/clients/C-NOBODY/personal-data", params={"purpose": "access request"}
        )
        assert unknown.status_code == 404

        answer = await stack.followup.get(url, params={"purpose": "D-04 access request"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert body["client_id"] == client
        assert body["request_event_id"] == request["event_id"]
        assert {name: v["value"] for name, v in body["fields"].items()} == PLANTED_FIELDS
        phone = body["fields"]["phone"]["source"]
        assert phone["event_type"] == "client.personal_data_recorded"
        assert phone["field"] == "fields"
        assert phone["sub_key"] == "phone"
        summary = [v for v in body["values"] if v["personal_field"] is None]
        assert [v["value"] for v in summary] == [PLANTED_SUMMARY]
        assert summary[0]["source"]["event_type"] == "complaint.received"
        assert summary[0]["source"]["field"] == "summary"

        # The task is closed by the recorded answer.
        assert await stack.tasks(client, "data_access_request") == []

        conn = await asyncpg.connect(settings.followup_database_url)
        try:
            stored = await conn.fetchval(
                "SELECT envelope::text FROM public.es_events "
                "WHERE type = 'client.personal_data_accessed'"
            )
            read_model = " ".join(
                r["sealed"] for r in await conn.fetch("SELECT sealed FROM fu_personal_values")
            )
            # every event followup recorded (its task creations too, D-07) is published
            recorded = int(await conn.fetchval("SELECT count(*) FROM public.es_events"))
        finally:
            await conn.close()
        accessed = orjson.loads(stored)
        assert accessed["event_id"] == body["access_event_id"]
        assert accessed["actor"] == {"id": "dpo-1", "role": "admin"}
        assert accessed["data"]["request_event_id"] == request["event_id"]
        purpose = accessed["data"]["purpose"]
        if "purpose" in PERSONAL_FIELDS["client.personal_data_accessed"]:
            assert is_sealed(purpose)
        else:
            assert purpose == "D-04 access request"
        assert sorted(accessed["data"]["fields"]) == sorted(PLANTED_FIELDS)
        assert accessed["data"]["texts"] == ["complaint.received/summary"]
        for value in (*PLANTED_FIELDS.values(), PLANTED_SUMMARY):
            assert value not in stored  # the record of the access names fields, not values
            assert value not in read_model  # the read model holds ciphertext only

        # Published through followup's outbox, so the audit trail receives it.
        topic = declare_topics(settings).followup_events.name
        records = await read_all(settings.kafka_bootstrap, topic, expect=recorded)
        types = [orjson.loads(r.value)["type"] for r in records if r.value]
        assert "client.personal_data_accessed" in types


async def test_the_access_deadline_follows_the_branch_profile(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    profiled = settings.model_copy(
        update={
            "followup_branch_profiles": {"BR-001": "uk_fca_disp"},
            "followup_access_request_days_by_profile": {"uk_fca_disp": 30},
        }
    )
    client = "C-ACCESS-2"
    async with privacy_stack(profiled, tokens) as stack:
        await stack.send(planted_journey(client)[0])
        await stack.send(
            submission(
                client,
                "client.data_access_requested",
                at(10),
                {"channel": "phone"},
            )
        )

        async def access_task() -> list[dict[str, object]] | None:
            return await stack.tasks(client, "data_access_request") or None

        (task,) = await eventually(access_task)
        requested = datetime.fromisoformat(at(10))
        assert task["profile"] == "uk_fca_disp"
        assert datetime.fromisoformat(str(task["due_at"])) == requested + timedelta(days=30)

"""A resend after a client's erasure, over HTTP on the real stack (Round 29, #12; D-04;
docs/privacy.md, "Submission hashes").

Since Round 29 a submission with personal values is hashed with a key of its subject's data
key, which the erasure destroys. A resend of such an event (same ``event_id``) is answered as a
duplicate while the client's key exists; once the scheduled erasure job has destroyed it the
resend is refused 409 problem+json ``rule: D-04`` ("Client erased"): never a silent accept (its
hash can no longer be made) and never a 5xx. An event of theirs without personal values is
still a duplicate of what is stored in clear."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import httpx
import pytest

from branchline_shared.crypto.keystore import KeyDestroyed, PostgresClientKeyStore
from branchline_shared.crypto.sealing import MasterKey
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.privacy.privacy_support import (
    PLANTED_FIELDS,
    at,
    audit_running,
    planted_journey,
    privacy_stack,
    submission,
)
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CLIENT = "C-RESENT-1"  # never did business: no retention, destroyed at once (D-04)


def with_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**event, "event_id": str(uuid.uuid4())} for event in events]


def personal(events: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = [e for e in events if e["type"] == "client.personal_data_recorded"]
    return event


def changed(event: dict[str, Any]) -> dict[str, Any]:
    """The same event id, another personal value (a guess of what was sent)."""
    fields = {**PLANTED_FIELDS, "phone": "+86 139 4711 0816"}
    return {**event, "data": {**event["data"], "fields": fields}}


def assert_erased(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["rule"] == "D-04", problem
    assert problem["title"] == "Client erased", problem
    assert problem["type"] == "https://branchline.dev/problems/rule-violation", problem


async def test_d04_a_personal_event_resent_is_a_duplicate_before_the_erasure_409_after(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    quick = settings.model_copy(
        update={"privacy_shred_interval_s": 0.3, "audit_checkpoint_interval_s": 0.5}
    )
    async with contextlib.AsyncExitStack() as running:
        audit = await running.enter_async_context(audit_running(quick, tokens))
        quick = quick.model_copy(
            update={"privacy_legal_holds_url": f"{audit.base_url}/v1/audit/legal-holds"}
        )
        stack = await running.enter_async_context(privacy_stack(quick, tokens))
        journey = with_ids(planted_journey(CLIENT))
        first = {e["event_id"]: await stack.send(e) for e in journey}
        sent = personal(journey)
        registration = journey[0]

        # Before the erasure: the same submission again is a duplicate (the first answer),
        # another one under its id 409 idempotency-conflict.
        again = await stack.intake.post("/v1/events", json=sent)
        assert again.status_code == 202, again.text
        assert again.json() == first[sent["event_id"]]
        conflict = await stack.intake.post("/v1/events", json=changed(sent))
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["type"].endswith("/idempotency-conflict"), conflict.text

        await stack.send(
            submission(CLIENT, "client.erasure_requested", at(20), {"reason": "by letter"})
        )
        pool = await open_pool(quick.keys_database_url)
        try:
            keys = PostgresClientKeyStore(pool, MasterKey(quick.resolved_master_key()))

            async def destroyed() -> bool:
                try:
                    await keys.existing_key(CLIENT)
                except KeyDestroyed:
                    return True
                return False

            await eventually(destroyed)  # by the worker's scheduled erasure job
        finally:
            await pool.close()

        # After it: the same submission and a guessed one are refused 409 D-04, never
        # answered as a duplicate (nor a conflict that would confirm a guess) nor a 5xx.
        for resent in (sent, changed(sent)):
            assert_erased(await stack.intake.post("/v1/events", json=resent))
        batch = await stack.intake.post("/v1/events:batch", json={"events": [sent]})
        assert batch.status_code < 500, batch.text
        assert "D-04" in batch.text, batch.text
        # An event without personal values: a duplicate of what is stored in clear.
        plain = await stack.intake.post("/v1/events", json=registration)
        assert plain.status_code == 202, plain.text
        assert plain.json() == first[registration["event_id"]]

"""D-04 for a member of staff on the real stack (PostgreSQL, the broker, intake, the followup
worker and API, the audit consumer and API): an admin records ``staff.erasure_requested``;
their own texts (training topics, gift descriptions, the request's reason, sealed under
``#staff/<id>``) are restricted at once; the worker's erasure job destroys the key of a leaver
whose retention (from the end of employment) has run, records ``staff.personal_data_shredded``,
and afterwards the texts open nowhere while the audit chain verifies; a member of staff still
employed stays restricted; other staff's and clients' texts are untouched."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from branchline_followup.adapters.personal_data import (
    apply_staff_privacy,
    pending_staff_erasures,
    staff_privacy_state,
)
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_shared.crypto.keystore import KeyDestroyed, PostgresClientKeyStore
from branchline_shared.crypto.sealing import MasterKey, SealingError, is_sealed, unseal
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.http.auth import Role
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.privacy.privacy_support import (
    PLANTED_SUMMARY,
    at,
    audit_running,
    planted_journey,
    privacy_stack,
)
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GONE = "S-GONE-1"  # left in 2014: retention (10 years) has run, destroyed at once
STAYS = "S-STAYS-1"  # still employed: restricted, no date yet
OTHER = "S-OTHER-1"  # asked for nothing
CLIENT = "C-STAFFCASE-1"  # a client whose texts must stay untouched
GONE_TOPIC = "Dorota-Wisniewska-grief-counselling-after-her-sons-accident"
GONE_GIFT = "Dorota-Wisniewska-accepted-spa-voucher-from-the-Lins"
GONE_REASON = "Dorota-Wisniewska-asks-by-registered-letter"
STAYS_TOPIC = "Pieter-de-Vries-disciplinary-retraining"
OTHER_TOPIC = "Amara-Okafor-AML-refresher-module-4"
GONE_PLANTS = (GONE_TOPIC, GONE_GIFT, GONE_REASON)


def staff_submission(staff_id: str, event_type: str, minutes: float, data: dict[str, Any]) -> Any:
    return {
        "type": event_type,
        "occurred_at": at(minutes),
        "staff_id": staff_id,
        "branch_id": "BR-001",
        "actor": {"id": "dpo-1", "role": "admin"},
        "data": data,
    }


def training(staff_id: str, topic: str) -> Any:
    data = {"hours": "3", "topic": topic, "completed_at": at(1)}
    return staff_submission(staff_id, "staff.training_recorded", 2, data)


async def stored_data(url: str, stream_id: str, event_type: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        envelope = await conn.fetchval(
            "SELECT envelope FROM es_events WHERE stream_id = $1 AND type = $2",
            stream_id,
            event_type,
        )
    finally:
        await conn.close()
    data: dict[str, Any] = orjson.loads(envelope)["data"]
    return data


async def test_a_leavers_texts_are_restricted_then_destroyed_while_the_trail_verifies(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    quick = settings.model_copy(
        update={"privacy_shred_interval_s": 0.3, "audit_checkpoint_interval_s": 0.5}
    )
    admin = tokens.headers(Role.ADMIN, sub="dpo-1")
    async with contextlib.AsyncExitStack() as running:
        audit = await running.enter_async_context(audit_running(quick, tokens))
        quick = quick.model_copy(
            update={"privacy_legal_holds_url": f"{audit.base_url}/v1/audit/legal-holds"}
        )
        stack = await running.enter_async_context(privacy_stack(quick, tokens))

        async def as_admin(event: Any, status: int = 202) -> httpx.Response:
            response = await stack.intake.post("/v1/events", json=event, headers=admin)
            assert response.status_code == status, response.text
            return response

        for event in planted_journey(CLIENT):
            await stack.send(event)
        for staff_id, topic in ((GONE, GONE_TOPIC), (STAYS, STAYS_TOPIC), (OTHER, OTHER_TOPIC)):
            await as_admin(training(staff_id, topic))
        gift = {"client_id": CLIENT, "value": "80", "accepted": False, "description": GONE_GIFT}
        await as_admin(staff_submission(GONE, "staff.gift_recorded", 3, gift))

        # Only an admin records a member of staff's erasure (never a branch system).
        gone_request = staff_submission(
            GONE,
            "staff.erasure_requested",
            5,
            {"reason": GONE_REASON, "employment_ended_at": "2014-03-31T18:00:00+00:00"},
        )
        refused = await stack.intake.post("/v1/events", json=gone_request)
        assert refused.status_code == 403, refused.text
        await as_admin(gone_request)
        await as_admin(
            staff_submission(STAYS, "staff.erasure_requested", 5, {"reason": "asked in person"})
        )
        # Branchline records the shredding itself: nobody may send it.
        forged = staff_submission(
            OTHER,
            "staff.personal_data_shredded",
            6,
            {"basis": "no_retention", "erasure_event_id": "00000000-0000-0000-0000-000000000001"},
        )
        assert (await stack.intake.post("/v1/events", json=forged, headers=admin)).status_code in (
            403,
            422,
        )

        # Restricted at once: STAYS's texts are withheld from every reader, OTHER's are not.
        stays = await stack.intake.get(f"/v1/streams/staff-{STAYS}/events", headers=admin)
        by_type = {e["type"]: e["data"] for e in stays.json()["events"]}
        assert by_type["staff.training_recorded"]["topic"] == "[restricted]"
        assert by_type["staff.training_recorded"]["hours"] == "3"  # the record itself stays
        assert by_type["staff.erasure_requested"]["reason"] == "[restricted]"
        other = await stack.intake.get(f"/v1/streams/staff-{OTHER}/events", headers=admin)
        assert is_sealed(other.json()["events"][0]["data"]["topic"])

        # GONE: the worker's erasure job destroys their key (retention ran out in 2024).
        async def gone_shredded() -> dict[str, Any] | None:
            r = await stack.intake.get(f"/v1/streams/staff-{GONE}/events", headers=admin)
            data = {e["type"]: e["data"] for e in r.json()["events"]}
            return data if data["staff.training_recorded"]["topic"] == "[shredded]" else None

        gone = await eventually(gone_shredded, within=30)
        assert gone["staff.gift_recorded"]["description"] == "[shredded]"
        assert gone["staff.gift_recorded"]["value"] == "80"
        assert gone["staff.erasure_requested"]["reason"] == "[shredded]"

        # No new text of theirs can be sealed any more (D-04); records without text still can.
        too_late = await stack.intake.post(
            "/v1/events", json=training(GONE, "anything at all"), headers=admin
        )
        assert too_late.status_code == 409, too_late.text
        assert too_late.headers["content-type"].startswith("application/problem+json")
        # Titled for whom (Round 30, #12: it was a client's, "Client erased"); the type stays.
        assert too_late.json() == {
            "type": "https://branchline.dev/problems/rule-violation",
            "title": "Member of staff erased",
            "status": 409,
            "detail": f"the data key of member of staff {GONE} was destroyed (D-04)",
            "rule": "D-04",
        }, too_late.text

        # The trail: the shredding is recorded, GONE's entries show shredded, STAYS's
        # restricted, OTHER's and the client's as before; the chain verifies.
        async def shredded_in_trail() -> list[dict[str, Any]] | None:
            r = await audit.get("/v1/audit/entries", params={"type": "staff.*", "limit": 100})
            entries: list[dict[str, Any]] = r.json()["entries"]
            types = {e["event"]["type"] for e in entries}
            return entries if "staff.personal_data_shredded" in types else None

        entries = await eventually(shredded_in_trail, within=30)
        shred = next(e for e in entries if e["event"]["type"] == "staff.personal_data_shredded")
        assert shred["event"]["staff_id"] == GONE
        assert shred["event"]["data"]["basis"] == "retention_ended"
        assert shred["event"]["data"]["retention_until"].startswith("2024-03-31")
        assert shred["event"]["actor"] == {"id": "privacy-shredder", "role": "system"}
        views = {
            (e["event"].get("staff_id"), e["event"]["type"]): e["view"]
            for e in entries
            if e["event"]["type"] == "staff.training_recorded"
        }
        assert views == {
            (GONE, "staff.training_recorded"): "shredded",
            (STAYS, "staff.training_recorded"): "restricted",
            (OTHER, "staff.training_recorded"): "masked",
        }
        complaint = await audit.get(
            "/v1/audit/entries", params={"client_id": CLIENT, "type": "complaint.received"}
        )
        assert [e["view"] for e in complaint.json()["entries"]] == ["masked"]
        verify = await audit.get("/v1/audit/verify")
        assert verify.status_code == 200
        assert verify.json()["ok"] is True, verify.text
        export = await audit.get("/v1/audit/export", params={"format": "jsonl"})
        assert export.status_code == 200
        for plant in (*GONE_PLANTS, STAYS_TOPIC, OTHER_TOPIC, PLANTED_SUMMARY):
            assert plant not in export.text

    # Not even the master key opens GONE's texts now; STAYS's (restricted, not destroyed),
    # OTHER's and the client's still open.
    gone_training = await stored_data(
        quick.intake_database_url, f"staff-{GONE}", "staff.training_recorded"
    )
    other_training = await stored_data(
        quick.intake_database_url, f"staff-{OTHER}", "staff.training_recorded"
    )
    complaint_data = await stored_data(
        quick.intake_database_url, f"client-{CLIENT}", "complaint.received"
    )
    pool = await open_pool(quick.keys_database_url)
    try:
        keys = PostgresClientKeyStore(pool, MasterKey(quick.resolved_master_key()))
        with pytest.raises(KeyDestroyed):
            await keys.existing_key(f"#staff/{GONE}")
        assert is_sealed(gone_training["topic"])
        other_key = await keys.existing_key(f"#staff/{OTHER}")
        assert other_key is not None
        opened = unseal(
            other_training["topic"], other_key, client_id=f"#staff/{OTHER}", path="topic"
        )
        assert opened == OTHER_TOPIC
        with pytest.raises(SealingError):  # another staff's key never opens GONE's text
            unseal(gone_training["topic"], other_key, client_id=f"#staff/{GONE}", path="topic")
        assert await keys.existing_key(f"#staff/{STAYS}") is not None
        client_key = await keys.existing_key(CLIENT)
        assert client_key is not None
        summary = unseal(complaint_data["summary"], client_key, client_id=CLIENT, path="summary")
        assert summary == PLANTED_SUMMARY
    finally:
        await pool.close()


def followup_staff_event(
    staff_id: str, event_type: str, occurred_at: datetime, data: dict[str, Any]
) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=occurred_at,
        recorded_at=occurred_at,
        source="intake",
        actor=Actor(id="dpo-1", role="admin"),
        staff_id=staff_id,
        stream_id=f"staff-{staff_id}",
        stream_version=1,
        data=data,
    )


async def test_the_staff_erasure_read_model_does_not_depend_on_the_order_applied(
    settings: BranchlineSettings,
) -> None:
    """A rebuild may apply followup's shredding before intake's request; a later request
    naming the end of employment sets it; the gift's client is kept for the holds."""
    asked = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    shredded_at = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    request = followup_staff_event(
        "S-1", "staff.erasure_requested", asked, {"reason": "bl:pii:v1:k:n:c"}
    )
    later = followup_staff_event(
        "S-2",
        "staff.erasure_requested",
        shredded_at,
        {"reason": "bl:pii:v1:k:n:c", "employment_ended_at": "2015-01-31T00:00:00+00:00"},
    )
    first = followup_staff_event(
        "S-2", "staff.erasure_requested", asked, {"reason": "bl:pii:v1:k:n:c"}
    )
    gift = followup_staff_event(
        "S-2",
        "staff.gift_recorded",
        asked,
        {"client_id": "C-9", "value": "1", "accepted": False, "description": "bl:pii:v1:k:n:c"},
    )
    shred = followup_staff_event(
        "S-1",
        "staff.personal_data_shredded",
        shredded_at,
        {"basis": "retention_ended", "erasure_event_id": str(request.event_id)},
    )
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    try:
        async with pool.acquire() as conn:
            for event in (shred, request, first, gift, later):
                await apply_staff_privacy(conn, event)
            s1 = await staff_privacy_state(conn, "S-1")
            s2 = await staff_privacy_state(conn, "S-2")
            pending = await pending_staff_erasures(conn)
    finally:
        await pool.close()
    assert s1 is not None
    assert s1.shredded_at == shredded_at
    assert s1.erasure_requested_at == asked
    assert s1.erasure_event_id == request.event_id
    assert s2 is not None
    assert s2.erasure_event_id == first.event_id
    assert s2.erasure_requested_at == asked
    assert s2.employment_ended_at == datetime(2015, 1, 31, tzinfo=UTC)
    assert s2.gift_clients == ("C-9",)
    assert [p.staff_id for p in pending] == ["S-2"]

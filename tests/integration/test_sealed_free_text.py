"""Seal everything personal, trust nothing sealed, decide on the clear payload (issue #9,
findings 2, 3 and 4), through intake's HTTP API on the real stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.crypto.sealing import PREFIX, is_sealed
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_intake_api import registration
from tests.support.examples import example_data
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PLANTED = "hospitalised with cancer, passport E12345678"


def step(client_id: str, event_type: str, data: dict[str, Any], minute: int) -> dict[str, Any]:
    event = registration(client_id)
    event.update(type=event_type, occurred_at=f"2026-11-22T09:{minute:02d}:00+08:00", data=data)
    return event


@pytest.fixture
async def intake(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Any]:
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url,
            headers=tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01", branch="BR-001"),
            timeout=30,
        ) as c,
    ):
        yield c


async def _stored(settings: BranchlineSettings, client_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT envelope::text AS e FROM es_events WHERE client_id = $1 ORDER BY 1", client_id
        )
    finally:
        await conn.close()
    return [orjson.loads(r["e"]) for r in rows]


async def test_a_3000_character_question_is_accepted_and_the_client_goes_on(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    """Finding 4: limits apply to the clear text; the sealed one is longer and must not count."""
    client = "C-long-q"
    assert (await intake.post("/v1/events", json=registration(client))).status_code == 202
    question = "请问" * 1500  # 3,000 characters, 9,000 bytes of UTF-8
    opened = step(
        client,
        "consultation.opened",
        {"consultation_id": "Q-1", "channel": "online", "question": question},
        1,
    )
    response = await intake.post("/v1/events", json=opened)
    assert response.status_code == 202, response.text
    # the client's history now holds a sealed text far beyond 4,000 characters: later events
    # of that client are decided on it without failing
    answered = step(client, "consultation.answered", {"consultation_id": "Q-1", "answer": "yes"}, 2)
    assert (await intake.post("/v1/events", json=answered)).status_code == 202
    too_long = step(
        client,
        "consultation.opened",
        {"consultation_id": "Q-2", "channel": "online", "question": "x" * 4001},
        3,
    )
    refused = await intake.post("/v1/events", json=too_long)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "data.question"
    (stored,) = [e for e in await _stored(settings, client) if e["type"] == "consultation.opened"]
    assert is_sealed(stored["data"]["question"])
    assert len(stored["data"]["question"]) > 4000


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        (
            "client.personal_data_recorded",
            {"fields": {"name": PREFIX + "k:a:b"}},
            "data.fields.name",
        ),
        (
            "complaint.received",
            {"complaint_id": "CP-1", "severity": "general", "summary": " " + PREFIX + "k:a:b"},
            "data.summary",
        ),
        (
            "client.identity_verified",
            {
                "method": "networked_id_check",
                "document_type": "passport",
                "verification_ref": PREFIX + "k1:AAAA:BBBB",
            },
            "data.verification_ref",
        ),
    ],
)
async def test_a_value_that_looks_sealed_is_refused(
    intake: httpx.AsyncClient, event_type: str, data: dict[str, Any], field: str
) -> None:
    """Finding 2: a caller's "sealed" value would be stored as sent, in clear, for ever."""
    response = await intake.post("/v1/events", json=step("C-smuggle", event_type, data, 5))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert response.json()["errors"][0]["type"] == "reserved_prefix"


async def test_free_texts_are_stored_sealed_and_ids_are_opaque_tokens(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    """Finding 3: the free texts that were stored in clear are sealed now; a correlation id is
    an opaque token (no spaces, no free text)."""
    client = "C-free-text"
    journey = [
        registration(client),
        step(
            client,
            "appointment.booked",
            {
                "appointment_id": "A-1",
                "slot_start": "2026-11-23T09:00:00+08:00",
                "purpose": PLANTED,
                "staff_id": "staff-1",
            },
            1,
        ),
        step(client, "appointment.cancelled", {"appointment_id": "A-1", "reason": PLANTED}, 2),
        step(client, "visit.arrived", {"visit_id": "V-1", "ticket": "A017"}, 3),
        step(
            client,
            "visit.guidance_given",
            {"visit_id": "V-1", "materials": [PLANTED, "payslip"]},
            4,
        ),
        step(
            client,
            "visit.documents_checked",
            {"visit_id": "V-1", "complete": False, "missing": [PLANTED]},
            5,
        ),
        step(
            client,
            "visit.closed",
            {"visit_id": "V-1", "outcome": "left_early", "reason": PLANTED},
            6,
        ),
    ]
    for event in journey:
        response = await intake.post("/v1/events", json=event)
        assert response.status_code == 202, (event["type"], response.text)
    stored = await _stored(settings, client)
    dump = orjson.dumps(stored).decode()
    assert PLANTED not in dump
    assert "A017" not in dump
    by_type = {e["type"]: e["data"] for e in stored}
    assert is_sealed(by_type["appointment.booked"]["purpose"])
    assert all(is_sealed(m) for m in by_type["visit.guidance_given"]["materials"])
    assert all(is_sealed(m) for m in by_type["visit.documents_checked"]["missing"])

    spaced = registration("C-corr", correlation_id="ID 110101199003070021")
    response = await intake.post("/v1/events", json=spaced)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "correlation_id"


async def _all_stored(settings: BranchlineSettings) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch("SELECT envelope::text AS e FROM es_events ORDER BY 1")
    finally:
        await conn.close()
    return [orjson.loads(r["e"]) for r in rows]


async def test_staff_and_shelf_texts_and_a_late_entry_reason_are_stored_sealed(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    """Issue #9: free text is sealed whatever the event is about: a member of staff's texts
    with their own key, the product shelf's with the institution's (docs/privacy.md "Which
    key"), and the envelope's late-entry reason with the event's key."""
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.ADMIN, sub="admin-1"), timeout=30
        ) as admin,
        httpx.AsyncClient(
            base_url=url,
            headers=tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01", branch="BR-001"),
            timeout=30,
        ) as branch,
    ):
        actor = {"id": "admin-1", "role": "admin"}
        at = "2026-11-22T09:00:00+08:00"
        governance = [
            {
                "type": "staff.training_recorded",
                "occurred_at": at,
                "staff_id": "staff-9",
                "actor": actor,
                "data": example_data("staff.training_recorded") | {"topic": PLANTED},
            },
            {
                "type": "staff.interest_declared",
                "occurred_at": at,
                "staff_id": "staff-9",
                "actor": actor,
                "data": example_data("staff.interest_declared") | {"nature": PLANTED},
            },
            {
                "type": "product.approved",
                "occurred_at": at,
                "product_id": "P-sealed",
                "actor": actor,
                "data": example_data("product.approved") | {"name": PLANTED},
            },
        ]
        for event in governance:
            response = await admin.post("/v1/events", json=event)
            assert response.status_code == 202, (event["type"], response.text)
        late = registration("C-late-sealed", late_entry={"reason": PLANTED})
        response = await branch.post("/v1/events", json=late)
        assert response.status_code == 202, response.text
        sealed_reason = registration(
            "C-late-smuggle", late_entry={"reason": PREFIX + "k1:AAAA:BBBB"}
        )
        refused = await branch.post("/v1/events", json=sealed_reason)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "late_entry.reason"
    stored = await _all_stored(settings)
    assert PLANTED not in orjson.dumps(stored).decode()
    by_type = {e["type"]: e for e in stored}
    assert is_sealed(by_type["staff.training_recorded"]["data"]["topic"])
    assert is_sealed(by_type["staff.interest_declared"]["data"]["nature"])
    assert is_sealed(by_type["product.approved"]["data"]["name"])
    late_stored = next(e for e in stored if e.get("client_id") == "C-late-sealed")
    assert is_sealed(late_stored["late_entry"]["reason"])

"""D-11 for a member of staff on the real stack (PostgreSQL, the broker, intake, the followup
worker, the audit API): an auditor's recorded hold naming the member of staff directly
(``staff_id``, held as ``#staff/<id>``) stops the erasure job destroying their key while a
leaver beside them, whose retention has run too, is destroyed; lifting the hold (recorded too)
lets the retention run."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest

from branchline_followup.adapters.personal_data import pending_staff_erasures
from branchline_followup.bootstrap import open_read_model_pool
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.privacy.privacy_support import audit_running, privacy_stack
from tests.integration.privacy.test_staff_erasure import staff_submission, training
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LEFT_LONG_AGO = {"reason": "asked by letter", "employment_ended_at": "2014-03-31T18:00:00+00:00"}


async def test_a_hold_on_a_member_of_staff_stops_their_destruction_until_lifted(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    held, beside = f"S-HELD-{uuid.uuid4().hex[:8]}", f"S-FREE-{uuid.uuid4().hex[:8]}"
    hold_id = f"LH-{uuid.uuid4().hex[:8]}"
    quick = settings.model_copy(update={"privacy_shred_interval_s": 0.3})
    admin = tokens.headers(Role.ADMIN, sub="dpo-1")
    async with contextlib.AsyncExitStack() as running:
        audit = await running.enter_async_context(audit_running(quick, tokens))
        quick = quick.model_copy(
            update={"privacy_legal_holds_url": f"{audit.base_url}/v1/audit/legal-holds"}
        )
        stack = await running.enter_async_context(privacy_stack(quick, tokens))

        async def as_admin(event: Any) -> None:
            response = await stack.intake.post("/v1/events", json=event, headers=admin)
            assert response.status_code == 202, response.text

        async def topic_of(staff_id: str) -> str:
            r = await stack.intake.get(f"/v1/streams/staff-{staff_id}/events", headers=admin)
            by_type = {e["type"]: e["data"] for e in r.json()["events"]}
            return str(by_type["staff.training_recorded"]["topic"])

        # The hold names the member of staff, not a client (they have no gift at all).
        body = {"staff_id": held, "hold_id": hold_id, "reason": "internal_investigation"}
        placed = await audit.post("/v1/audit/legal-holds", json=body)
        assert placed.status_code == 201, placed.text
        assert placed.json()["hold"]["staff_id"] == held
        assert placed.json()["hold"]["client_id"] == f"#staff/{held}"
        both = await audit.post("/v1/audit/legal-holds", json={**body, "client_id": "C-1"})
        assert both.status_code == 422, both.text
        assert both.headers["content-type"] == "application/problem+json"
        listed = await audit.get("/v1/audit/legal-holds", params={"staff_id": held})
        assert [h["hold_id"] for h in listed.json()["holds"]] == [hold_id]

        for staff_id in (held, beside):
            await as_admin(training(staff_id, f"{staff_id}-topic"))
        await as_admin(staff_submission(held, "staff.erasure_requested", 5, LEFT_LONG_AGO))

        # The held member of staff is pending in followup before the other one asks: the
        # round that destroys the other's key has weighed theirs too.
        pool = await open_read_model_pool(quick)
        try:

            async def pending() -> bool:
                async with pool.acquire() as conn:
                    return held in {p.staff_id for p in await pending_staff_erasures(conn)}

            await eventually(pending, within=30)
        finally:
            await pool.close()
        await as_admin(staff_submission(beside, "staff.erasure_requested", 5, LEFT_LONG_AGO))

        async def beside_shredded() -> bool:
            return await topic_of(beside) == "[shredded]"

        await eventually(beside_shredded, within=30)
        assert await topic_of(held) == "[restricted]"  # held: restricted, not destroyed

        lifted = await audit.post(
            f"/v1/audit/legal-holds/{hold_id}/lift", json={"reason": "matter_closed"}
        )
        assert lifted.status_code == 200, lifted.text

        async def held_shredded() -> bool:
            return await topic_of(held) == "[shredded]"

        await eventually(held_shredded, within=30)

        trail = await audit.get(
            "/v1/audit/entries", params={"client_id": f"#staff/{held}", "type": "audit.*"}
        )
        recorded = [
            (e["event"]["type"], e["event"]["actor"]["id"])
            for e in trail.json()["entries"]
            if e["event"]["type"].startswith("audit.legal_hold")
        ]
        assert recorded == [
            ("audit.legal_hold_placed", "auditor-1"),
            ("audit.legal_hold_lifted", "auditor-1"),
        ]


async def test_the_audit_api_refuses_a_hold_naming_no_subject(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    async with audit_running(settings, tokens) as audit:
        none = await audit.post(
            "/v1/audit/legal-holds", json={"hold_id": "LH-X", "reason": "litigation"}
        )
        assert none.status_code == 422, none.text
        assert none.headers["content-type"] == "application/problem+json"
        both = await audit.get("/v1/audit/legal-holds", params={"client_id": "C", "staff_id": "S"})
        assert both.status_code == 422, both.text
        assert both.json()["errors"][0]["field"] == "staff_id"
        rm = tokens.headers(Role.RM, sub="rm-7")
        body = {"staff_id": "S-1", "hold_id": "LH-Y", "reason": "litigation"}
        refused = await audit.post("/v1/audit/legal-holds", json=body, headers=rm)
        assert refused.status_code == 403

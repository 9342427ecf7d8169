"""D-04 for a member of staff on the real stack (PostgreSQL, the broker, intake, the followup
worker and API, the audit consumer and API): an admin records ``staff.data_access_requested``;
a task is due for the privacy officer; ``GET /v1/staff/{staff_id}/personal-data`` (admin, with a
purpose) answers with their own texts in clear and their provenance, records
``staff.personal_data_accessed`` (published, so in the audit trail) and closes the task;
restricted after their erasure request (409), gone after its shredding (410, saying what)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from branchline_followup.adapters.client_journal import clear_read_models
from branchline_followup.adapters.personal_data import apply_staff_privacy, personal_values
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_shared.console.web import SESSION_COOKIE
from branchline_shared.crypto.sealing import is_sealed
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.privacy.privacy_support import START, at, audit_running, privacy_stack
from tests.integration.privacy.test_staff_erasure import (
    followup_staff_event,
    staff_submission,
    training,
)
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_staff_access_request_is_answered_recorded_and_closed(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    member, other = f"S-ASK-{uuid.uuid4().hex[:8]}", f"S-NOT-{uuid.uuid4().hex[:8]}"
    topic, gift = f"{member}-grief-counselling", f"{member}-spa-voucher-from-the-Lins"
    quick = settings.model_copy(update={"privacy_shred_interval_s": 0.3})
    admin = tokens.headers(Role.ADMIN, sub="dpo-1")
    async with contextlib.AsyncExitStack() as running:
        audit = await running.enter_async_context(audit_running(quick, tokens))
        quick = quick.model_copy(
            update={"privacy_legal_holds_url": f"{audit.base_url}/v1/audit/legal-holds"}
        )
        stack = await running.enter_async_context(privacy_stack(quick, tokens))

        async def as_admin(event: Any, status: int = 202) -> dict[str, Any]:
            response = await stack.intake.post("/v1/events", json=event, headers=admin)
            assert response.status_code == status, response.text
            body: dict[str, Any] = response.json()
            return body

        await as_admin(training(member, topic))
        await as_admin(training(other, f"{other}-topic"))
        gift_data = {"client_id": "C-9", "value": "80", "accepted": False, "description": gift}
        await as_admin(staff_submission(member, "staff.gift_recorded", 3, gift_data))
        asked = staff_submission(member, "staff.data_access_requested", 10, {"channel": "online"})
        # staff events are admins' alone
        assert (await stack.intake.post("/v1/events", json=asked)).status_code == 403
        request = await as_admin(asked)
        forged = staff_submission(
            member, "staff.personal_data_accessed", 11, {"purpose": "made up"}
        )
        refused = await stack.intake.post("/v1/events", json=forged, headers=admin)
        assert refused.status_code in (403, 422), refused.text  # Branchline records it itself

        holder = f"#staff/{member}"

        async def access_task() -> list[dict[str, object]] | None:
            return await stack.tasks(holder, "data_access_request") or None

        (task,) = await eventually(access_task, within=30)
        assert task["rule"] == "D-04"
        assert task["assignee"] == "privacy-officer"
        assert task["source_event_id"] == request["event_id"]
        due = datetime.fromisoformat(str(task["due_at"]))
        assert due == datetime.fromisoformat(at(10)) + timedelta(days=15)
        # The privacy officer's work list names the member of staff, with no link to a
        # client page (``/console/clients/#staff/...`` was a fragment: a broken link).
        async with httpx.AsyncClient(base_url=stack.followup.base_url, timeout=30) as page:
            page.cookies.set(
                f"{SESSION_COOKIE}_followup", tokens.token(Role.RM, sub="privacy-officer")
            )
            page.headers["accept-language"] = "en"
            day = await page.get("/console/")
        assert day.status_code == 200, day.text
        assert f"Member of staff {member}" in day.text
        assert "The member of staff asked for a copy of their own personal data." in day.text
        assert "The client asked" not in day.text
        assert "/console/clients/#staff" not in day.text

        url = f"/v1/staff/{member}/personal-data"
        missing = await stack.followup.get(url)
        assert missing.status_code == 422
        assert missing.headers["content-type"].startswith("application/problem+json")
        for role in (Role.RM, Role.SUPERVISOR, Role.AUDITOR, Role.BRANCH_SYSTEM):
            denied = await stack.followup.get(
                url, params={"purpose": "curious"}, headers=stack.as_(role, "someone")
            )
            assert denied.status_code == 403, (role, denied.text)
        unknown = await stack.followup.get(
            "/v1/staff/S-NOBODY-X/personal-data", params={"purpose": "access request"}
        )
        assert unknown.status_code == 404, unknown.text

        answer = await stack.followup.get(url, params={"purpose": "D-04 access request"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert body["staff_id"] == member
        assert body["request_event_id"] == request["event_id"]
        shown = {
            (v["source"]["event_type"], v["source"]["field"]): v["value"] for v in body["values"]
        }
        assert shown == {
            ("staff.training_recorded", "topic"): topic,
            ("staff.gift_recorded", "description"): gift,
        }  # theirs alone: the other member of staff's topic is not in it
        assert await stack.tasks(holder, "data_access_request") == []  # closed by the answer

        conn = await asyncpg.connect(quick.followup_database_url)
        try:
            stored = await conn.fetchval(
                "SELECT envelope::text FROM public.es_events "
                "WHERE type = 'staff.personal_data_accessed' AND stream_id = $1",
                f"privacy-staff/{member}",
            )
            read_model = " ".join(
                r["sealed"] for r in await conn.fetch("SELECT sealed FROM fu_personal_values")
            )
        finally:
            await conn.close()
        accessed = orjson.loads(stored)
        assert accessed["event_id"] == body["access_event_id"]
        assert accessed["staff_id"] == member
        assert accessed["actor"] == {"id": "dpo-1", "role": "admin"}
        assert accessed["data"]["request_event_id"] == request["event_id"]
        assert is_sealed(accessed["data"]["purpose"])
        assert accessed["data"]["texts"] == [
            "staff.gift_recorded/description",
            "staff.training_recorded/topic",
        ]
        for value in (topic, gift):
            assert value not in stored
            assert value not in read_model  # ciphertext only

        # In the audit trail (published through followup's outbox).
        async def in_trail() -> bool:
            r = await audit.get(
                "/v1/audit/entries", params={"type": "staff.personal_data_accessed"}
            )
            return any(e["event"]["staff_id"] == member for e in r.json()["entries"])

        await eventually(in_trail, within=30)

        # Restricted from their erasure request on; a leaver's texts are then destroyed.
        erasure = {"reason": "asked", "employment_ended_at": "2014-03-31T18:00:00+00:00"}
        await as_admin(staff_submission(member, "staff.erasure_requested", 12, erasure))

        async def gone() -> dict[str, Any] | None:
            r = await stack.followup.get(url, params={"purpose": "again"})
            return r.json() if r.status_code == 410 else None

        problem = await eventually(gone, within=30)
        assert problem["rule"] == "D-04"
        assert "training topics" in problem["detail"]  # what is gone
        assert "stay" in problem["detail"]  # and what is not

        # The other member of staff is untouched and answered too (no request: closes none).
        theirs = await stack.followup.get(
            f"/v1/staff/{other}/personal-data", params={"purpose": "x"}
        )
        assert theirs.status_code == 200, theirs.text
        assert [v["value"] for v in theirs.json()["values"]] == [f"{other}-topic"]
        assert theirs.json()["request_event_id"] is None


async def test_a_restricted_member_of_staff_is_answered_409(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    member = f"S-STAYS-{uuid.uuid4().hex[:8]}"
    admin = tokens.headers(Role.ADMIN, sub="dpo-1")
    async with privacy_stack(settings, tokens) as stack:
        for event in (
            training(member, "anything"),
            staff_submission(member, "staff.data_access_requested", 4, {"channel": "online"}),
            staff_submission(member, "staff.erasure_requested", 5, {"reason": "asked"}),
        ):
            response = await stack.intake.post("/v1/events", json=event, headers=admin)
            assert response.status_code == 202, response.text

        # The open request is cancelled by the erasure request (restricted texts are shown to
        # nobody); waited for on the task list, since an answer given before the erasure was
        # applied would rightly close it as done.
        async def statuses() -> list[str] | None:
            listed = await stack.followup.get(
                "/v1/followups",
                params={"client_id": f"#staff/{member}", "kind": "data_access_request"},
            )
            assert listed.status_code == 200, listed.text
            found = [str(t["status"]) for t in listed.json()["items"]]
            return found if found and found != ["open"] else None

        assert await eventually(statuses, within=30) == ["cancelled"]
        restricted = await stack.followup.get(
            f"/v1/staff/{member}/personal-data", params={"purpose": "p"}
        )
        assert restricted.status_code == 409, restricted.text
        assert restricted.json()["rule"] == "D-04"


async def test_their_texts_are_kept_under_their_key_id_and_survive_a_reprojection(
    settings: BranchlineSettings,
) -> None:
    """PostgreSQL: a staff event's sealed text is kept in ``fu_personal_values`` under
    ``#staff/<id>``; clearing what ``#staff/<id>``'s journal wrote (a re-projection of their
    access request's tasks) keeps it; their shredding removes it."""
    member = f"S-KEPT-{uuid.uuid4().hex[:8]}"
    holder = f"#staff/{member}"
    sealed = f"bl:pii:v1:k:n:{uuid.uuid4().hex}"
    topic = followup_staff_event(
        member,
        "staff.training_recorded",
        START,
        {"hours": "1", "topic": sealed, "completed_at": START.isoformat()},
    )
    erasure = followup_staff_event(member, "staff.erasure_requested", START, {"reason": sealed})
    shredded = followup_staff_event(
        member,
        "staff.personal_data_shredded",
        START,
        {"basis": "no_retention", "erasure_event_id": str(erasure.event_id)},
    )
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    try:
        async with pool.acquire() as conn:
            await apply_staff_privacy(conn, topic)
            kept = [v.sealed for v in await personal_values(conn, holder)]
            await clear_read_models(conn, holder)
            after_clear = [v.sealed for v in await personal_values(conn, holder)]
            await apply_staff_privacy(conn, erasure)
            await apply_staff_privacy(conn, shredded)
            after_shred = await personal_values(conn, holder)
            await apply_staff_privacy(conn, topic)  # a late copy after shredding keeps nothing
            late = await personal_values(conn, holder)
    finally:
        await pool.close()
    assert kept == [sealed]
    assert after_clear == [sealed]
    assert after_shred == []
    assert late == []

"""Suitability over HTTP on the real stack (D-03, D-05, D-05b, D-13, D-14, D-16): the allowed
path of every rule, and each refusal answered with its rule and found in the audit trail.

The intake here runs with the standard's own bounds on ``occurred_at`` (5 minutes of skew, a
24-hour late-entry window); every time is relative to now.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from branchline_intake.bootstrap import create_app
from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.consumers import audit_consumer
from tests.support.stack import Infra, eventually, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NOW = datetime.now(UTC).replace(microsecond=0)
PRODUCT = "P-FUND-1"
RM = "rm-1"


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


@dataclass
class Callers:
    branch: httpx.AsyncClient
    admin: httpx.AsyncClient
    supervisor: httpx.AsyncClient
    settings: BranchlineSettings

    async def post(self, who: httpx.AsyncClient, body: dict[str, Any], status: int = 202) -> Any:
        response = await who.post("/v1/events", json=body)
        assert response.status_code == status, (body["type"], response.text)
        return response.json()


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    # the standard's bounds (the suite widens them for its dated stories)
    return make_settings(
        infra,
        tmp_path,
        intake_late_entry_window_hours=24,
        intake_clock_skew_seconds=300,
        staff_supervisors={RM: "sup-1"},  # sup-1 approves for its team's clients only
    )


@pytest.fixture
async def callers(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Callers]:
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url,
            headers=tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01", branch="BR-1"),
            timeout=30,
        ) as branch,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.ADMIN, sub="admin-1"), timeout=30
        ) as admin,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.SUPERVISOR, sub="sup-1"), timeout=30
        ) as supervisor,
    ):
        yield Callers(branch, admin, supervisor, settings)


def governance(
    event_type: str, subject: tuple[str, str], data: dict[str, Any], at: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": event_type,
        "occurred_at": at,
        subject[0]: subject[1],
        "actor": {"id": "admin-1", "role": "admin"},
        "data": data,
        **extra,
    }


def client_event(
    event_type: str,
    client: str,
    data: dict[str, Any],
    at: str,
    actor: str = RM,
    role: str = "rm",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": event_type,
        "occurred_at": at,
        "client_id": client,
        "branch_id": "BR-1",
        "channel": "walk_in",
        "actor": {"id": actor, "role": role},
        "data": data,
        **extra,
    }


def approved(risk: str = "R3", category: str = "fund") -> dict[str, Any]:
    return {
        "name": "Balanced Growth Fund",
        "category": category,
        "risk": risk,
        "risk_factors": {"market": risk, "credit": "R2", "liquidity": "R2"},
        "eligible_client_types": ["individual"],
    }


def qualified(category: str = "fund") -> dict[str, Any]:
    return {
        "category": category,
        "certificate_id": "AMAC-1",
        "valid_until": (NOW + timedelta(days=365)).isoformat(),
    }


DISCLOSURE = {
    "product_id": PRODUCT,
    "acknowledged": True,
    "items": ["risks", "returns", "fees", "holding_period"],
    "holding_period": "3 years or more",
}
TERMS = {
    "product_id": PRODUCT,
    "terms": {"expected_return": "variable", "period": "3 years", "fees": "1.2% subscription"},
}


async def shelve(c: Callers, at: str, **extra: Any) -> None:
    await c.post(
        c.admin, governance("product.approved", ("product_id", PRODUCT), approved(), at, **extra)
    )
    await c.post(c.admin, governance("staff.qualified", ("staff_id", RM), qualified(), at, **extra))


async def onboard(c: Callers, client: str, at: str, level: str = "C3", **extra: Any) -> None:
    steps = [
        ("client.registered", {"client_type": "individual", "rm_id": RM}),
        (
            "client.identity_verified",
            {
                "method": "networked_id_check",
                "document_type": "resident_id",
                "document_expires_at": (NOW + timedelta(days=3650)).date().isoformat(),
            },
        ),
        ("client.screened", {"result": "clear"}),
        ("client.risk_assessed", {"level": level}),
    ]
    for event_type, data in steps:
        await c.post(c.branch, client_event(event_type, client, data, at, **extra))


async def test_walk_through_a_suitable_sale_and_its_as_of_proof(callers: Callers) -> None:
    c = callers
    await shelve(c, ago(minutes=30))
    await onboard(c, "C-OK", ago(minutes=20))
    recommended = await c.post(
        c.branch,
        client_event("product.recommended", "C-OK", {"product_id": PRODUCT}, ago(minutes=10)),
    )
    disclosed = await c.post(
        c.branch, client_event("product.risk_disclosed", "C-OK", DISCLOSURE, ago(minutes=8))
    )
    confirmed = await c.post(
        c.branch, client_event("product.terms_confirmed", "C-OK", TERMS, ago(minutes=6))
    )
    sold = await c.post(
        c.branch,
        client_event(
            "product.sold", "C-OK", {"product_id": PRODUCT, "amount": "100000"}, ago(minutes=1)
        ),
    )

    stream = (await c.branch.get("/v1/streams/client-C-OK/events")).json()["events"]
    by_id = {e["event_id"]: e for e in stream}
    assert by_id[recommended["event_id"]]["data"]["product_risk"] == "R3"  # filled from the shelf
    sale = by_id[sold["event_id"]]
    proof = sale["data"]
    assert proof["product_risk"] == "R3"
    assert proof["relied_on_disclosure_event_id"] == disclosed["event_id"]
    assert proof["relied_on_terms_event_id"] == confirmed["event_id"]
    for key in ("identity", "screening", "assessment", "rating", "qualification"):
        assert proof[f"relied_on_{key}_event_id"], key
    assert proof["received_at"] == sale["recorded_at"]  # occurred and received, both kept

    product = (await c.branch.get(f"/v1/products/{PRODUCT}")).json()
    assert product["status"] == "on_sale"
    assert product["risk_in_force"] == "R3"
    assert [r["risk"] for r in product["ratings"]] == ["R3"]
    assert [p["product_id"] for p in (await c.branch.get("/v1/products")).json()["products"]] == [
        PRODUCT
    ]
    staff = (await c.branch.get(f"/v1/staff/{RM}")).json()
    assert staff["valid_categories"] == ["fund"]
    assert staff["qualifications"][0]["valid_now"] is True


async def test_refusals_an_auditor_wants_to_see_are_recorded_in_the_audit_trail(
    callers: Callers,
) -> None:
    c = callers
    expected: dict[str, str] = {}  # refused event id -> rule

    async def refused(
        who: httpx.AsyncClient, body: dict[str, Any], rule: str, field: str | None = None
    ) -> None:
        body = {**body, "event_id": str(uuid.uuid4())}
        response = await who.post("/v1/events", json=body)
        assert response.status_code == 409, (body["type"], response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["rule"] == rule, problem
        if field is not None:
            assert field in [e["field"] for e in problem.get("errors", [])], problem
        expected[body["event_id"]] = rule

    await shelve(c, ago(minutes=50))
    # D-13: the shelf is the institution's, not the branch's
    assert (
        await c.branch.post(
            "/v1/events",
            json=governance("product.approved", ("product_id", "P-X"), approved(), ago(minutes=1)),
        )
    ).status_code == 403
    await refused(
        c.admin,
        governance(
            "product.rerated",
            ("product_id", PRODUCT),
            {"risk": "R4", "effective_at": ago(hours=2), "reason": "backdated"},
            ago(minutes=1),
        ),
        "D-13",
        "data.effective_at",
    )
    await onboard(c, "C-R", ago(minutes=40))
    rec = lambda product, at, actor=RM, **data: client_event(  # noqa: E731
        "product.recommended", "C-R", {"product_id": product, **data}, at, actor=actor
    )
    await refused(c.branch, rec("P-UNKNOWN", ago(minutes=30)), "D-13", "data.product_id")
    await refused(
        c.branch, rec(PRODUCT, ago(minutes=30), product_risk="R2"), "D-13", "data.product_risk"
    )
    # D-14: a recommendation by staff without a valid fund qualification
    await refused(c.branch, rec(PRODUCT, ago(minutes=30), actor="rm-2"), "D-14", "actor.id")
    # D-16: an interest declared to the firm must be disclosed to the client
    await c.post(
        c.admin,
        governance(
            "staff.interest_declared",
            ("staff_id", RM),
            {"product_id": PRODUCT, "nature": "spouse works for the manager"},
            ago(minutes=29),
        ),
    )
    await refused(c.branch, rec(PRODUCT, ago(minutes=28)), "D-16", "data.interest_disclosed")
    await c.post(c.branch, rec(PRODUCT, ago(minutes=27), interest_disclosed=True))
    # D-05: itemised disclosure, named terms
    partial = {**DISCLOSURE, "items": ["risks", "fees"]}
    await refused(
        c.branch,
        client_event("product.risk_disclosed", "C-R", partial, ago(minutes=26)),
        "D-05",
        "data.items",
    )
    no_fees = {"product_id": PRODUCT, "terms": {"rate": "3.1%", "period": "1 year"}}
    await refused(
        c.branch,
        client_event("product.terms_confirmed", "C-R", no_fees, ago(minutes=26)),
        "D-05",
        "data.terms",
    )
    assert (
        await c.branch.post(
            "/v1/events",
            json=client_event(
                "product.terms_confirmed",
                "C-R",
                {"product_id": PRODUCT, "terms": {"colour": "blue"}},
                ago(minutes=26),
            ),
        )
    ).status_code == 422
    # D-03: a method that does not open the gate, an expired document, a screening hit
    sale = {"product_id": PRODUCT, "amount": "1000"}
    for client, method, expires, screening in [
        ("C-METHOD", "in_person", (NOW + timedelta(days=30)).isoformat(), "clear"),
        ("C-EXPIRED", "networked_id_check", ago(days=1), "clear"),
        ("C-HIT", "networked_id_check", (NOW + timedelta(days=30)).isoformat(), "hit"),
    ]:
        for event_type, data in [
            ("client.registered", {"client_type": "individual", "rm_id": RM}),
            (
                "client.identity_verified",
                {"method": method, "document_type": "passport", "document_expires_at": expires},
            ),
            ("client.screened", {"result": screening}),
            ("client.risk_assessed", {"level": "C4"}),
            ("product.risk_disclosed", DISCLOSURE),
            ("product.terms_confirmed", TERMS),
        ]:
            await c.post(c.branch, client_event(event_type, client, data, ago(minutes=20)))
        await refused(c.branch, client_event("product.sold", client, sale, ago(minutes=10)), "D-03")
    # D-05b: dated in the future; and the backdating case: a sale sent 470 days late, dated
    # inside an assessment that has since expired
    await refused(
        c.branch,
        client_event(
            "client.screened", "C-R", {"result": "clear"}, (NOW + timedelta(hours=1)).isoformat()
        ),
        "D-05b",
        "occurred_at",
    )
    late = {"late_entry": {"reason": "paper records of the branch, entered after the outage"}}
    await onboard(c, "C-LATE", ago(days=475), **late)
    late_sale = client_event("product.sold", "C-LATE", sale, ago(days=470))
    await refused(c.branch, late_sale, "D-05b", "late_entry")
    await refused(c.branch, {**late_sale, **late}, "D-05b", "late_entry")
    assert (
        await c.branch.post(
            "/v1/events",
            json=client_event(
                "client.late_entry_approved",
                "C-LATE",
                {"event_id": str(uuid.uuid4()), "reason": "r"},
                ago(minutes=1),
            ),
        )
    ).status_code == 403

    async with audit_consumer(c.settings) as ledger:

        async def all_refusals_in_ledger() -> dict[str, str] | None:
            found: dict[str, str] = {}
            async for entry in ledger.scan():
                if entry.event["type"] == "rule.violation_refused":
                    data = entry.event["data"]
                    found[data["refused_event"]["event_id"]] = data["rule"]
            return found if set(expected) <= set(found) else None

        found = await eventually(all_refusals_in_ledger, within=60)
    assert {k: found[k] for k in expected} == expected
    assert set(expected.values()) == {"D-03", "D-05", "D-05b", "D-13", "D-14", "D-16"}


async def test_a_late_sale_with_a_supervisors_approval_is_accepted_with_both_times(
    callers: Callers,
) -> None:
    c = callers
    late = {"late_entry": {"reason": "paper records of the branch, entered after the outage"}}
    await shelve(c, ago(days=480), **late)
    await onboard(c, "C-APPROVED", ago(days=475), **late)
    for event_type, data in [
        ("product.risk_disclosed", DISCLOSURE),
        ("product.terms_confirmed", TERMS),
    ]:
        body = client_event(event_type, "C-APPROVED", data, ago(days=471), **late)
        if event_type == "product.terms_confirmed":  # a contract: its late entry is approved too
            body["event_id"] = str(uuid.uuid4())
            await c.post(
                c.supervisor,
                client_event(
                    "client.late_entry_approved",
                    "C-APPROVED",
                    {"event_id": body["event_id"], "reason": "checked against the signed paper"},
                    ago(minutes=2),
                    actor="sup-1",
                    role="supervisor",  # a supervisor's token speaks as the supervisor
                ),
            )
        await c.post(c.branch, body)
    sale_id = str(uuid.uuid4())
    approval = await c.post(
        c.supervisor,
        client_event(
            "client.late_entry_approved",
            "C-APPROVED",
            {"event_id": sale_id, "reason": "contract on paper, signed 470 days ago"},
            ago(minutes=1),
            actor="sup-1",
            role="supervisor",
        ),
    )
    sold = await c.post(
        c.branch,
        {
            **client_event(
                "product.sold",
                "C-APPROVED",
                {"product_id": PRODUCT, "amount": "5000"},
                ago(days=470),
                **late,
            ),
            "event_id": sale_id,
        },
    )

    events = (await c.branch.get("/v1/streams/client-C-APPROVED/events")).json()["events"]
    sale = next(e for e in events if e["event_id"] == sold["event_id"])
    # the reason is free text: stored and served sealed like every personal value (issue #9)
    assert sale["late_entry"]["reason"].startswith(SEALED_PREFIX)
    assert "paper records" not in sale["late_entry"]["reason"]
    assert sale["data"]["relied_on_late_entry_approval_event_id"] == approval["event_id"]
    occurred = datetime.fromisoformat(sale["occurred_at"])
    received = datetime.fromisoformat(sale["data"]["received_at"])
    assert received - occurred > timedelta(days=469)

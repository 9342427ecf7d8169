"""D-15 on the real stack (broker, worker, PostgreSQL, API): a re-rating makes a review task
due for every holder whose tolerance it now exceeds, and for no one else; a lower
reassessment makes one for the holdings above the new tolerance."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import ApiClients, History, now_utc, produce_events
from tests.support.events import ADMIN, recorded_event
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# (client, tolerance, rating the product is sold at); the product is then re-rated to R4
HOLDERS = [
    ("C-T1", "C1", "R1"),
    ("C-T2", "C2", "R2"),
    ("C-T3", "C3", "R2"),
    ("C-T4", "C4", "R3"),
    ("C-T5", "C5", "R3"),
]
RERATED_TO = 4


def rerated(product_id: str, risk: str, at: Any) -> RecordedEvent:
    return recorded_event(
        "product.rerated",
        {"risk": risk, "effective_at": at.isoformat(), "reason": "equity share raised"},
        at=at,
        product_id=product_id,
        version=2,
        actor=ADMIN,
    )


async def _some_reviews(api: Any, client_id: str) -> list[dict[str, Any]] | None:
    return await _reviews(api, client_id) or None


async def _reviews(api: Any, client_id: str) -> list[dict[str, Any]]:
    page = (
        await api.get(
            "/v1/followups", params={"client_id": client_id, "kind": "suitability_review"}
        )
    ).json()
    return list(page["items"])


async def test_d15_a_rerating_makes_a_review_due_for_every_affected_holder(
    settings: BranchlineSettings, stack: ApiClients, db: Any
) -> None:
    now = now_utc()
    h = History()
    for client, tolerance, rating in HOLDERS:
        h.registered(client, now - timedelta(days=3))
        h.add("client.risk_assessed", client, now - timedelta(days=3), {"level": tolerance})
        h.add(
            "product.sold",
            client,
            now - timedelta(days=2),
            {"product_id": "P-FUND-1", "amount": "1000", "product_risk": rating},
        )
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")
    await produce_events(settings, h.events)

    async def holders_applied() -> bool:
        # each sale made its D-08 product review due: the holdings are recorded (the
        # re-rating travels under the product's key, in another partition than the clients)
        for client, _, _ in HOLDERS:
            page = (
                await supervisor.get(
                    "/v1/followups", params={"client_id": client, "kind": "product_review"}
                )
            ).json()
            if not page["items"]:
                return False
        return True

    await eventually(holders_applied, within=60)
    change = rerated("P-FUND-1", f"R{RERATED_TO}", now - timedelta(hours=1))
    await produce_events(settings, [change])

    affected = [c for c, tolerance, _ in HOLDERS if int(tolerance[1]) < RERATED_TO]
    for client in affected:
        (review,) = await eventually(lambda c=client: _some_reviews(supervisor, c), within=60)
        assert review["rule"] == "D-15"
        assert review["assignee"] == "rm-7"
        assert review["subject"] == "suitability:P-FUND-1"
        assert review["source_event_id"] == str(change.event_id)
    for client in {c for c, _, _ in HOLDERS} - set(affected):
        assert await _reviews(supervisor, client) == []

    # a reassessment lowering C-T5 from C5 to C2 makes its own review of the (now R4) holding
    lower = h.add("client.risk_assessed", "C-T5", now - timedelta(minutes=30), {"level": "C2"})
    await produce_events(settings, [lower])
    (review,) = await eventually(lambda: _some_reviews(supervisor, "C-T5"), within=60)
    assert review["source_event_id"] == str(lower.event_id)
    assert review["subject"] == "suitability:P-FUND-1"

    # completing the review without the client's warning is refused (D-15), and recorded
    rm = stack.as_(Role.RM, "rm-7")
    refused = await rm.post(f"/v1/followups/{review['id']}/complete", json={"outcome": "contacted"})
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["rule"] == "D-15"
    assert [e["field"] for e in problem["errors"]] == ["client_warned"]
    recorded = await db.fetchrow(
        "SELECT envelope FROM es_events WHERE type = 'rule.violation_refused'"
    )
    assert recorded is not None
    envelope = recorded["envelope"]
    refusal = (json.loads(envelope) if isinstance(envelope, str) else envelope)["data"]
    assert refusal["rule"] == "D-15"
    assert refusal["refused_event"]["type"] == "followup.completed"
    assert refusal["refused_event"]["client_id"] == "C-T5"
    (still,) = await _reviews(supervisor, "C-T5")
    assert still["status"] == "open"

    # the RM warns the client and records the outcome
    done = await rm.post(
        f"/v1/followups/{review['id']}/complete",
        json={"outcome": "contacted", "note": "warned; keeps the holding", "client_warned": True},
    )
    assert done.status_code == 200, done.text
    assert done.json()["sla_state"] == "done"


def approved(product_id: str, risk: str, at: Any) -> RecordedEvent:
    return recorded_event(
        "product.approved",
        {
            "name": "Income Fund",
            "category": "fund",
            "risk": risk,
            "eligible_client_types": ["individual"],
        },
        at=at,
        product_id=product_id,
        actor=ADMIN,
    )


async def test_d15_a_sale_arriving_after_a_later_rerating_is_reviewed_in_either_order(
    settings: BranchlineSettings, stack: ApiClients, db: Any
) -> None:
    """The product's events travel under its key, the clients' under theirs: a sale dated
    before a re-rating may reach followup after it. Either way the holding ends at the rating
    in force and the re-rating makes the review due."""
    now = now_utc()
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")
    h = History()
    for client in ("C-O1", "C-O2"):
        h.registered(client, now - timedelta(days=3))
        h.add("client.risk_assessed", client, now - timedelta(days=3), {"level": "C2"})

    def sale(client: str) -> RecordedEvent:
        return h.add(
            "product.sold",
            client,
            now - timedelta(days=2),
            {"product_id": "P-INC-1", "amount": "1000", "product_risk": "R2"},
        )

    approval = approved("P-INC-1", "R2", now - timedelta(days=10))
    change = rerated("P-INC-1", "R4", now - timedelta(hours=1))
    change = change.model_copy(update={"stream_version": 2})
    # C-O1 bought and was applied before the re-rating arrived
    await produce_events(settings, [approval, *h.events, sale("C-O1")])

    async def held(client: str, risk: str) -> bool:
        row = await db.fetchrow(
            "SELECT product_risk FROM fu_read.fu_holdings WHERE client_id = $1", client
        )
        return row is not None and row["product_risk"] == risk

    await eventually(lambda: held("C-O1", "R2"), within=60)
    await produce_events(settings, [change])

    async def rating_known() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM fu_read.fu_product_ratings WHERE product_id = 'P-INC-1'"
        )
        return bool(count == 2)

    await eventually(rating_known, within=60)
    # C-O2's sale (dated before the re-rating took effect) arrives after it
    await produce_events(settings, [sale("C-O2")])

    for client in ("C-O1", "C-O2"):
        (review,) = await eventually(lambda c=client: _some_reviews(supervisor, c), within=60)
        assert review["source_event_id"] == str(change.event_id)
        assert review["subject"] == "suitability:P-INC-1"
        assert await held(client, "R4")

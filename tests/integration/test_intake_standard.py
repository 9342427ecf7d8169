"""The standard enforced at intake, over HTTP on the real stack (issue: D-01..D-05, D-09)."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchline_intake.bootstrap import create_app
from branchline_shared.events.catalogue import (
    GOVERNANCE_EVENT_TYPES,
    PAYLOAD_MODELS,
    SUPERVISOR_EVENT_TYPES,
    SYSTEM_EVENT_TYPES,
)
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.consumers import audit_consumer
from tests.support.examples import (
    EXAMPLE_JOURNEY,
    EXAMPLE_SHELF,
    example_data,
    submission,
)
from tests.support.stack import Infra, eventually, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOT_BRANCH = SYSTEM_EVENT_TYPES | SUPERVISOR_EVENT_TYPES
BRANCH_STEPS = [s for s in EXAMPLE_JOURNEY if s.type not in NOT_BRANCH]
BRANCH_TYPES = sorted(set(PAYLOAD_MODELS) - NOT_BRANCH - GOVERNANCE_EVENT_TYPES)
SHELF_STEPS = [s for s in EXAMPLE_SHELF if s.occurred_at < "2026-11-20"]
"""The example product approved and the RM qualified before the journeys (D-13, D-14)."""


@contextlib.asynccontextmanager
async def served_intake(
    settings: BranchlineSettings, app: FastAPI | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Intake served on ``settings`` (``app``: one made on them), the shelf posted, and a
    branch system's client."""
    tokens = TokenFactory(settings)
    async with (
        serve(app or create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01"), timeout=30
        ) as client,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.ADMIN, sub="admin-1"), timeout=30
        ) as admin,
    ):
        for step in SHELF_STEPS:
            response = await admin.post("/v1/events", json=submission(step))
            assert response.status_code == 202, response.text
        yield client


@pytest.fixture
async def intake(settings: BranchlineSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with served_intake(settings) as client:
        yield client


@dataclass(frozen=True)
class Refusing:
    client: httpx.AsyncClient
    settings: BranchlineSettings
    shelf: int
    """The events stored once the shelf was posted: every one a 422 case may find."""


async def refusing_intake(client: httpx.AsyncClient, settings: BranchlineSettings) -> Refusing:
    return Refusing(client, settings, await count_events(settings, "TRUE"))


@pytest.fixture(scope="module")
async def refusing(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Refusing]:
    """One intake for the module's 422 cases (#12: a stack a case took 1-2 s of setup, for
    some fifty cases). Each case still finds no event stored after its request (on any
    stream): one stored by a case fails that case (every earlier one left none) and every
    later one (``test_the_shared_check_fails_once_a_shared_intake_stores_a_refused_event``).
    Last, the check is shown able to fail on this very intake and database: a client event
    this intake accepts makes it fail."""
    settings = make_settings(infra, tmp_path_factory.mktemp("refusing"))
    async with served_intake(settings) as client:
        shared = await refusing_intake(client, settings)
        yield shared
        accepted = await client.post("/v1/events", json=journey("C-SELF-CHECK")[0])
        assert accepted.status_code == 202, accepted.text
        with pytest.raises(AssertionError, match="stored after a refusal"):
            await assert_nothing_stored(shared)


async def assert_nothing_stored(refusing: Refusing) -> None:
    stored = await count_events(refusing.settings, "TRUE") - refusing.shelf
    assert stored == 0, f"{stored} event(s) stored after a refusal"


async def assert_refused(
    refusing: Refusing, event_type: str, data: dict[str, Any], field: str
) -> None:
    """The check of each 422 case: ``data`` as an ``event_type`` is refused naming ``field``
    and nothing is stored."""
    body = {**journey("C-BAD")[0], "type": event_type, "data": data}
    response = await refusing.client.post("/v1/events", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    await assert_nothing_stored(refusing)


async def count_events(
    settings: BranchlineSettings, where: str = "stream_id LIKE 'client-%'", *args: object
) -> int:
    """The events of clients' streams (the shelf the fixture set up is not counted); ``where``
    is constant text, its values ``args`` ($1, ...)."""
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM es_events WHERE {where}", *args))
    finally:
        await conn.close()


def journey(client_id: str) -> list[dict[str, Any]]:
    return [submission(step, client_id=client_id) for step in BRANCH_STEPS]


async def test_a_full_reception_journey_is_accepted(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    for body in journey("C-J1"):
        response = await intake.post("/v1/events", json=body)
        assert response.status_code == 202, (body["type"], response.text)
    stream = (await intake.get("/v1/streams/client-C-J1/events")).json()["events"]
    assert [e["type"] for e in stream] == [s.type for s in BRANCH_STEPS]
    sale = next(e for e in stream if e["type"] == "product.sold")
    by_type = {e["type"]: e["event_id"] for e in stream}
    # D-05 as-of proof: the sale names the assessment, disclosure and confirmation it relied on
    assert sale["data"]["relied_on_assessment_event_id"] == by_type["client.risk_assessed"]
    assert sale["data"]["relied_on_disclosure_event_id"] == by_type["product.risk_disclosed"]
    assert sale["data"]["relied_on_terms_event_id"] == by_type["product.terms_confirmed"]


async def test_d05_sale_above_tolerance_is_refused_and_the_refusal_reaches_the_audit_trail(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    def step(event_type: str, data: dict[str, Any], at: str) -> dict[str, Any]:
        return {
            "type": event_type,
            "occurred_at": at,
            "client_id": "C-D05",
            "branch_id": "BR-001",
            "channel": "walk_in",
            "actor": {"id": "rm-42", "role": "rm"},
            "data": data,
        }

    for body in [
        step(
            "client.registered",
            {"client_type": "individual", "rm_id": "rm-42"},
            "2026-11-20T09:00:00+08:00",
        ),
        step(
            "client.identity_verified",
            {"method": "in_person", "document_type": "passport"},
            "2026-11-20T09:01:00+08:00",
        ),
        step("client.risk_assessed", {"level": "C2"}, "2026-11-20T09:02:00+08:00"),
        # the product is R3 on the shelf: above a C2 client's tolerance
    ]:
        assert (await intake.post("/v1/events", json=body)).status_code == 202
    refused_id = str(uuid.uuid4())
    above = step(
        "product.recommended",
        {"product_id": "P-FUND-007", "product_risk": "R3"},
        "2026-11-20T09:03:00+08:00",
    )
    above["event_id"] = refused_id
    async with audit_consumer(settings) as ledger:
        response = await intake.post("/v1/events", json=above)
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["rule"] == "D-05"
        assert await count_events(settings, "event_id = $1", uuid.UUID(refused_id)) == 0

        async def refusal_in_ledger() -> dict[str, Any] | None:
            async for entry in ledger.scan():
                if entry.event["type"] == "rule.violation_refused":
                    return dict(entry.event)
            return None

        refusal = await eventually(refusal_in_ledger, within=30)
    assert refusal["data"]["rule"] == "D-05"
    assert refusal["data"]["refused_event"]["event_id"] == refused_id
    assert refusal["data"]["refused_event"]["type"] == "product.recommended"
    assert refusal["data"]["submitted_by"]["id"] == "queue-01"


async def test_a_batch_of_1000_with_10_bad_items_stores_990_and_answers_each_in_place(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    events: list[dict[str, Any]] = []
    bad = set(range(7, 1000, 100))  # 10 positions
    for i in range(1000):
        body = {
            "type": "client.registered",
            "occurred_at": "2026-11-22T09:00:00+08:00",
            "client_id": f"C-B{i}",
            "branch_id": "BR-001",
            "channel": "walk_in",
            "actor": {"id": "s-1", "role": "teller"},
            "data": {"client_type": "individual", "rm_id": "rm-1"},
        }
        if i in bad:
            if i % 2:
                body["data"]["client_type"] = "alien"  # refused by the catalogue
            else:
                body.pop("actor")  # refused by the envelope
        events.append(body)
    response = await intake.post("/v1/events:batch", json={"events": events})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 1000
    assert [r["index"] for r in results] == list(range(1000))
    refused_at = [r["index"] for r in results if r["status"] != 202]
    assert refused_at == sorted(bad)
    for r in results:
        if r["status"] != 202:
            assert r["status"] == 422
            assert r["errors"][0]["field"] in ("data.client_type", "actor")
    assert await count_events(settings) == 990


async def test_a_batch_above_1000_is_refused_whole(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    one = journey("C-BIG")[0]
    response = await intake.post("/v1/events:batch", json={"events": [one] * 1001})
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "events"
    assert await count_events(settings) == 0


async def test_a_batch_sees_its_own_earlier_items(intake: httpx.AsyncClient) -> None:
    """Rules decide in batch order: registration then identity in one batch works; a sale
    before its disclosure in the same batch is refused (D-05)."""
    steps = journey("C-BATCH")
    response = await intake.post("/v1/events:batch", json={"events": steps})
    assert [r["status"] for r in response.json()["results"]] == [202] * len(steps)

    early = journey("C-BATCH2")
    sold = next(i for i, b in enumerate(early) if b["type"] == "product.sold")
    disclosed = next(i for i, b in enumerate(early) if b["type"] == "product.risk_disclosed")
    early.insert(disclosed, early.pop(sold))  # the sale now comes before its disclosure
    results = (await intake.post("/v1/events:batch", json={"events": early})).json()["results"]
    assert results[disclosed]["status"] == 409
    assert results[disclosed]["rule"] == "D-05"


async def test_system_event_types_cannot_be_sent_by_branch_systems(
    intake: httpx.AsyncClient, settings: BranchlineSettings
) -> None:
    body = journey("C-SYS")[0]
    body.update(type="followup.completed", data=example_data("followup.completed"))
    response = await intake.post("/v1/events", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "type"
    assert await count_events(settings) == 0


def _required_field(event_type: str) -> str:
    model = PAYLOAD_MODELS[event_type]
    return next(name for name, f in model.model_fields.items() if f.is_required())


def _missing_a_required_field(event_type: str) -> tuple[dict[str, Any], str]:
    """An example of ``event_type`` without its first required field, and that field."""
    missing = _required_field(event_type)
    data = example_data(event_type)
    data.pop(missing)
    return data, f"data.{missing}"


@pytest.mark.parametrize("event_type", BRANCH_TYPES)
async def test_every_type_missing_a_required_field_is_422_naming_it(
    refusing: Refusing, event_type: str
) -> None:
    await assert_refused(refusing, event_type, *_missing_a_required_field(event_type))


@pytest.mark.parametrize(
    ("event_type", "mutate", "field"),
    [
        ("client.registered", lambda d: d.update(client_type="alien"), "data.client_type"),
        ("client.risk_assessed", lambda d: d.update(level="C9"), "data.level"),
        ("product.recommended", lambda d: d.update(product_risk="R0"), "data.product_risk"),
        ("complaint.received", lambda d: d.update(severity="apocalyptic"), "data.severity"),
        ("visit.closed", lambda d: d.update(outcome="vanished"), "data.outcome"),
        (
            "client.consent_granted",
            lambda d: d.update(expires_at="2031-11-20T00:00:00"),
            "data.expires_at",
        ),
        (
            "appointment.booked",
            lambda d: d.update(slot_start="2026-11-22T10:00:00"),
            "data.slot_start",
        ),
        ("complaint.received", lambda d: d.update(summary="x" * 100_000), "data.summary"),
        ("consultation.opened", lambda d: d.update(question="q" * 100_000), "data.question"),
        (
            "feedback.survey_answered",
            lambda d: d["scores"].update(attitude=101),
            "data.scores.attitude",
        ),
    ],
    ids=[
        "enum-client-type",
        "enum-risk-level",
        "enum-product-risk",
        "enum-severity",
        "enum-outcome",
        "naive-expires-at",
        "naive-slot",
        "oversize-summary",
        "oversize-question",
        "score-above-100",
    ],
)
async def test_bad_values_are_422_naming_the_field_and_store_nothing(
    refusing: Refusing, event_type: str, mutate: Any, field: str
) -> None:
    data = copy.deepcopy(example_data(event_type))
    mutate(data)
    await assert_refused(refusing, event_type, data, field)


class StoresWhatItRefuses:
    """A broken intake double: the real intake, but while ``broken`` is set each 422 it
    answers on ``/v1/events`` is sent only once ``store`` has stored an event (as an intake
    that wrote before it validated would)."""

    def __init__(self, app: ASGIApp, store: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.store = store
        self.broken = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/events" or not self.broken:
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif status == 422 and not message.get("more_body", False):
                await self.store()
            await send(message)

        await self.app(scope, receive, sending)


async def test_the_shared_check_fails_once_a_shared_intake_stores_a_refused_event(
    settings: BranchlineSettings,
) -> None:
    """The 422 cases share one intake (#12): a case whose intake stored an event fails at
    its "nothing stored" check, and so does every later case; the earlier ones pass."""
    stored: list[int] = []
    doubles: list[StoresWhatItRefuses] = []

    async def store() -> None:
        valid = journey(f"C-STORED-{len(stored)}")[0]
        async with httpx.AsyncClient(base_url=str(client.base_url), headers=client.headers) as c:
            assert (await c.post("/v1/events", json=valid)).status_code == 202
        stored.append(1)

    app = create_app(settings)
    app.add_middleware(_recording(doubles), store=store)
    async with served_intake(settings, app) as client:
        double = await refusing_intake(client, settings)
        (broken,) = doubles
        cases = [(t, *_missing_a_required_field(t)) for t in BRANCH_TYPES[:3]]
        await assert_refused(double, *cases[0])  # the intake not broken yet: it passes
        broken.broken = True
        with pytest.raises(AssertionError, match="1 event\\(s\\) stored after a refusal"):
            await assert_refused(double, *cases[1])
        broken.broken = False
        with pytest.raises(AssertionError, match="1 event\\(s\\) stored after a refusal"):
            await assert_refused(double, *cases[2])  # a later case fails too
    assert stored == [1]


def _recording(doubles: list[StoresWhatItRefuses]) -> Callable[..., StoresWhatItRefuses]:
    """The double's class as a middleware factory that keeps the instance Starlette makes."""

    def make(app: ASGIApp, store: Callable[[], Awaitable[None]]) -> StoresWhatItRefuses:
        doubles.append(StoresWhatItRefuses(app, store))
        return doubles[-1]

    return make

"""The stack the D-04 tests run on: intake, the followup worker and API, on the real
PostgreSQL and broker, and a client journey that plants distinctive personal values."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from branchline_audit.adapters.database import open_role_pool
from branchline_audit.adapters.database import prepare_database as prepare_audit_database
from branchline_audit.bootstrap import audit_context, build_consumer, ledger_probe
from branchline_audit.bootstrap import create_app as create_audit_app
from branchline_followup.bootstrap import create_app as create_followup_app
from branchline_followup.bootstrap import running_worker
from branchline_intake.bootstrap import create_app as create_intake_app
from branchline_shared.clock import SystemClock
from branchline_shared.http.auth import Role
from branchline_shared.kafka.producer import make_producer
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.stack import eventually, serve

PLANTED_FIELDS = {
    "name": "Zhuang Qiaolian",
    "id_number": "110101199003078515",
    "phone": "+86 139 4711 0815",
    "address": "17 Xiqiao Lane, Hangzhou",
}
PLANTED_SUMMARY = "Qiaolian-cardiology-appointment was shared with a stranger"
PLANTED_VALUES = (*PLANTED_FIELDS.values(), PLANTED_SUMMARY)
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
"""The tests' events happen within the last two hours (no late entries, D-05b)."""


def at(minutes: float) -> str:
    """``minutes`` after :data:`START`, as an RFC 3339 string."""
    return (START + timedelta(minutes=minutes)).isoformat()


def submission(client_id: str, event_type: str, at: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": event_type,
        "occurred_at": at,
        "client_id": client_id,
        "branch_id": "BR-001",
        "channel": "walk_in",
        "actor": {"id": "staff-17", "role": "teller"},
        "data": data,
    }


def planted_journey(client_id: str) -> list[dict[str, Any]]:
    """Registration, consent, the planted personal fields and a complaint whose summary holds
    a planted free text."""
    return [
        submission(
            client_id,
            "client.registered",
            at(0),
            {"client_type": "individual", "rm_id": "rm-7"},
        ),
        submission(
            client_id,
            "client.consent_granted",
            at(1),
            {"purposes": ["service"]},
        ),
        submission(
            client_id,
            "client.personal_data_recorded",
            at(2),
            {"fields": PLANTED_FIELDS, "purpose": "service"},
        ),
        submission(
            client_id,
            "complaint.received",
            at(3),
            {"complaint_id": "CP-1", "severity": "general", "summary": PLANTED_SUMMARY},
        ),
    ]


@dataclass
class PrivacyStack:
    intake: httpx.AsyncClient
    followup: httpx.AsyncClient
    tokens: TokenFactory

    async def send(self, event: dict[str, Any], status: int = 202) -> dict[str, Any]:
        response = await self.intake.post("/v1/events", json=event)
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    def as_(self, role: Role, sub: str) -> dict[str, str]:
        return self.tokens.headers(role, sub=sub)

    async def tasks(self, client_id: str, kind: str) -> list[dict[str, Any]]:
        response = await self.followup.get(
            "/v1/followups", params={"client_id": client_id, "kind": kind, "status": "open"}
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def known_to_followup(self, client_id: str) -> None:
        async def probe() -> bool:
            return (await self.followup.get(f"/v1/clients/{client_id}")).status_code == 200

        await eventually(probe)


def branch_system_headers(tokens: TokenFactory) -> dict[str, str]:
    """The branch system of BR-001, which relays its tellers' events (with its ``branch_id``
    claim where tokens carry one)."""
    try:
        return tokens.headers(Role.BRANCH_SYSTEM, sub="branch-BR-001", branch="BR-001")  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # tokens without a branch claim
        return tokens.headers(Role.BRANCH_SYSTEM, sub="branch-BR-001")


@contextlib.asynccontextmanager
async def privacy_stack(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[PrivacyStack]:
    admin = tokens.headers(Role.ADMIN, sub="dpo-1")
    branch = branch_system_headers(tokens)
    async with (
        serve(create_intake_app(settings)) as intake_url,
        running_worker(settings),
        serve(create_followup_app(settings)) as followup_url,
        httpx.AsyncClient(base_url=intake_url, headers=branch, timeout=20) as intake,
        httpx.AsyncClient(base_url=followup_url, headers=admin, timeout=20) as followup,
    ):
        yield PrivacyStack(intake, followup, tokens)


@contextlib.asynccontextmanager
async def audit_running(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The audit consumer (as production wires it) and the audit API, as an auditor."""
    await prepare_audit_database(settings)
    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=2)
    producer = make_producer(settings, client_id="privacy-test-audit-dlq")
    await producer.start()
    clock = SystemClock()
    consumer = build_consumer(
        settings,
        audit_context(settings, pool, clock).ledger,
        producer,
        clock,
        answering=ledger_probe(pool),
    )
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.started.wait(), timeout=30)
        async with (
            serve(create_audit_app(settings)) as url,
            httpx.AsyncClient(
                base_url=url, headers=tokens.headers(Role.AUDITOR, sub="auditor-1"), timeout=30
            ) as client,
        ):
            yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await pool.close()

"""The role matrix of docs/access-control.md, walked cell by cell on the real stack.

``MATRIX`` is the one table of this test; it must equal the document's (parsed below), and
every route the services serve must be in it. Each cell is then tried with a real token:
``no`` must be 403, ``yes`` allowed, and a scoped cell (``own``, ``team``, ``branch``) allowed
in scope and refused out of scope (404 for client data, so existence does not leak). Without a
token every row is 401.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from branchline_audit.bootstrap import create_app as create_audit_app
from branchline_followup.bootstrap import create_app as create_followup_app
from branchline_followup.bootstrap import running_worker
from branchline_intake.bootstrap import create_app as create_intake_app
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.consumers import audit_consumer
from tests.support.stack import Infra, eventually, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "access-control.md"
ROLES = ("branch_system", "rm", "supervisor", "auditor", "admin")

MATRIX: dict[str, tuple[str, str, str, str, str]] = {
    # endpoint: branch_system, rm, supervisor, auditor, admin
    "POST /v1/events": ("branch", "own", "team", "no", "yes"),
    "POST /v1/events:batch": ("branch", "own", "team", "no", "yes"),
    "GET /v1/streams/{stream_id}/events": ("branch", "own", "team", "no", "yes"),
    "GET /v1/schemas": ("yes", "yes", "yes", "yes", "yes"),
    "GET /v1/schemas/envelope": ("yes", "yes", "yes", "yes", "yes"),
    "GET /v1/schemas/{event_type}/v{version}": ("yes", "yes", "yes", "yes", "yes"),
    "GET /v1/products": ("yes", "yes", "yes", "no", "yes"),
    "GET /v1/products/{product_id}": ("yes", "yes", "yes", "no", "yes"),
    "GET /v1/staff/{staff_id}": ("yes", "yes", "yes", "no", "yes"),
    "GET /v1/followups": ("no", "own", "team", "no", "yes"),
    "POST /v1/followups/{task_id}/complete": ("no", "own", "team", "no", "yes"),
    "POST /v1/followups/{task_id}/reassign": ("no", "no", "team", "no", "yes"),
    "GET /v1/clients/{client_id}": ("branch", "own", "team", "no", "yes"),
    "GET /v1/quality": ("no", "own", "team", "no", "yes"),
    "GET /v1/statistics/complaints": ("no", "no", "yes", "yes", "yes"),
    "GET /v1/clients/{client_id}/personal-data": ("no", "no", "no", "no", "yes"),
    "GET /v1/staff/{staff_id}/personal-data": ("no", "no", "no", "no", "yes"),
    "GET /v1/dev/clock": ("no", "no", "no", "no", "yes"),
    "POST /v1/dev/clock": ("no", "no", "no", "no", "yes"),
    "GET /v1/audit/entries": ("no", "no", "no", "yes", "no"),
    "GET /v1/audit/entries/{position}/proof": ("no", "no", "no", "yes", "no"),
    "GET /v1/audit/export": ("no", "no", "no", "yes", "no"),
    "GET /v1/audit/verify": ("no", "no", "no", "yes", "yes"),
    "GET /v1/audit/checkpoints/latest": ("no", "no", "no", "yes", "yes"),
    "GET /v1/audit/checkpoints/{first}/consistency/{second}": ("no", "no", "no", "yes", "yes"),
    "GET /v1/audit/public-key": ("no", "no", "no", "yes", "yes"),
    "GET /v1/audit/legal-holds": ("no", "no", "no", "yes", "yes"),
    "POST /v1/audit/legal-holds": ("no", "no", "no", "yes", "yes"),
    "POST /v1/audit/legal-holds/{hold_id}/lift": ("no", "no", "no", "yes", "yes"),
}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}

SUBJECTS = {
    "branch_system": "queue-01",
    "rm": "rm-7",
    "supervisor": "sup-1",
    "auditor": "aud-1",
    "admin": "admin-1",
}
HOME, AWAY = "BR-001", "BR-002"
TEAM = {"rm-7": "sup-1", "rm-8": "sup-1", "rm-9": "sup-2"}


# --- the document and the routes ------------------------------------------------------------


def doc_matrix() -> dict[str, tuple[str, ...]]:
    rows: dict[str, tuple[str, ...]] = {}
    in_matrix = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            in_matrix = line.strip() == "## The matrix"
        if not in_matrix or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        endpoint = re.match(r"`([^`]+)`", cells[0])
        assert endpoint is not None, line
        rows[endpoint.group(1)] = tuple(cells[1:])
    return rows


def test_the_document_and_this_test_state_the_same_matrix() -> None:
    assert doc_matrix() == MATRIX


def _routes(app: FastAPI) -> set[str]:
    """Every operation the service documents (its OpenAPI), but the public ones."""
    return {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        if path not in PUBLIC
        for method in operations
    }


def test_every_route_of_every_service_is_in_the_matrix(tmp_path: Path) -> None:
    settings = BranchlineSettings(data_dir=tmp_path, dev_mode=True, jwt_secret="x" * 40)
    served = set()
    for create in (create_intake_app, create_followup_app, create_audit_app):
        served |= _routes(create(settings))
    missing = served - set(MATRIX)
    assert not missing, (
        f"routes without a row in docs/access-control.md and MATRIX: {sorted(missing)}"
    )
    assert set(MATRIX) <= served, f"rows for routes no service serves: {set(MATRIX) - served}"


# --- the walk ---------------------------------------------------------------------------------


@dataclass
class Stack:
    intake: str
    followup: str
    audit: str
    tokens: TokenFactory
    http: httpx.AsyncClient
    tasks: dict[str, str] = field(default_factory=dict)
    """client id -> id of its open revisit task."""

    def headers(self, role: str) -> dict[str, str]:
        branch = HOME if role == "branch_system" else None
        return self.tokens.headers(Role(role), sub=SUBJECTS[role], branch=branch)

    async def call(self, role: str | None, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(role) if role else {}
        return await self.http.request(method, url, headers=headers, **kwargs)


def _now() -> str:
    return (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def _registration(client_id: str, branch: str, rm_id: str) -> dict[str, Any]:
    return {
        "type": "client.registered",
        "occurred_at": _now(),
        "client_id": client_id,
        "branch_id": branch,
        "channel": "walk_in",
        "actor": {"id": "teller-1", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": rm_id},
    }


def _assessment(role: str, client_id: str, branch: str) -> dict[str, Any]:
    actor = (
        {"id": "teller-1", "role": "teller"}
        if role == "branch_system"
        else {"id": SUBJECTS[role], "role": role}
    )
    return {
        "event_id": str(uuid.uuid4()),
        "type": "client.risk_assessed",
        "occurred_at": _now(),
        "client_id": client_id,
        "branch_id": branch,
        "channel": "walk_in",
        "actor": actor,
        "data": {"level": "C3"},
    }


@contextlib.asynccontextmanager
async def real_stack(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Stack]:
    async with (
        audit_consumer(settings),
        running_worker(settings),
        serve(create_intake_app(settings)) as intake,
        serve(create_followup_app(settings)) as followup,
        serve(create_audit_app(settings)) as audit,
        httpx.AsyncClient(timeout=30) as http,
    ):
        yield Stack(intake, followup, audit, tokens, http)


IN = "C-IN"
OUT = "C-OUT"  # rm-9's clients (team of sup-2), registered at the other branch
OUT_2 = "C-OUT-2"  # its task is the one reassigned (OUT's is completed)
SCOPED_CLIENTS = [f"{IN}-{n}" for n in range(1, 7)]


async def _seed(stack: Stack) -> None:
    away = stack.tokens.headers(Role.BRANCH_SYSTEM, sub="queue-02", branch=AWAY)
    for client in SCOPED_CLIENTS:
        answer = await stack.call(
            "branch_system",
            "POST",
            f"{stack.intake}/v1/events",
            json=_registration(client, HOME, "rm-7"),
        )
        assert answer.status_code == 202, answer.text
    for client in (OUT, OUT_2):
        answer = await stack.http.post(
            f"{stack.intake}/v1/events", json=_registration(client, AWAY, "rm-9"), headers=away
        )
        assert answer.status_code == 202, answer.text

    for subject, event_type, data in (
        (
            {"product_id": "P-M1"},
            "product.approved",
            {
                "name": "Matrix Fund",
                "category": "fund",
                "risk": "R3",
                "eligible_client_types": ["individual"],
            },
        ),
        (
            {"staff_id": "rm-7"},
            "staff.qualified",
            {
                "category": "fund",
                "certificate_id": "C-1",
                "valid_until": (datetime.now(UTC) + timedelta(days=365)).isoformat(),
            },
        ),
    ):
        governance = {
            "type": event_type,
            "occurred_at": _now(),
            **subject,
            "actor": {"id": SUBJECTS["admin"], "role": "admin"},
            "data": data,
        }
        answer = await stack.call("admin", "POST", f"{stack.intake}/v1/events", json=governance)
        assert answer.status_code == 202, answer.text

    async def tasks_ready() -> dict[str, str] | None:
        page = await stack.call("admin", "GET", f"{stack.followup}/v1/followups?limit=100")
        found = {t["client_id"]: t["id"] for t in page.json()["items"] if t["status"] == "open"}
        return found if set(SCOPED_CLIENTS) | {OUT, OUT_2} <= set(found) else None

    stack.tasks = await eventually(tasks_ready, within=60)

    async def in_ledger() -> bool:
        entries = await stack.call("auditor", "GET", f"{stack.audit}/v1/audit/entries?limit=50")
        return len(entries.json()["entries"]) >= len(SCOPED_CLIENTS) + 2

    await eventually(in_ledger, within=60)


Probe = Callable[[Stack, str, bool], Awaitable[httpx.Response]]
"""Calls one endpoint as a role, in scope (True) or out of it (False)."""


async def _events(stack: Stack, role: str, inside: bool) -> httpx.Response:
    client, branch = (f"{IN}-6", HOME) if inside else (OUT, AWAY)
    return await stack.call(
        role, "POST", f"{stack.intake}/v1/events", json=_assessment(role, client, branch)
    )


async def _batch(stack: Stack, role: str, inside: bool) -> httpx.Response:
    client, branch = (f"{IN}-6", HOME) if inside else (OUT, AWAY)
    response = await stack.call(
        role,
        "POST",
        f"{stack.intake}/v1/events:batch",
        json={"events": [_assessment(role, client, branch)]},
    )
    if response.status_code != 200:
        return response
    item = response.json()["results"][0]  # the item's own answer is what the matrix states
    return httpx.Response(item["status"], json=item)


def _get(service: str, path: Callable[[bool], str]) -> Probe:
    async def probe(stack: Stack, role: str, inside: bool) -> httpx.Response:
        return await stack.call(role, "GET", getattr(stack, service) + path(inside))

    return probe


async def _complete(stack: Stack, role: str, inside: bool) -> httpx.Response:
    own = {"rm": f"{IN}-1", "supervisor": f"{IN}-2", "admin": f"{IN}-3"}
    client = own.get(role, f"{IN}-1") if inside else OUT
    task = stack.tasks[client]
    return await stack.call(
        role,
        "POST",
        f"{stack.followup}/v1/followups/{task}/complete",
        json={"outcome": "contacted"},
    )


async def _reassign(stack: Stack, role: str, inside: bool) -> httpx.Response:
    own = {"supervisor": f"{IN}-4", "admin": f"{IN}-5"}
    client = own.get(role, f"{IN}-4") if inside else OUT_2
    return await stack.call(
        role,
        "POST",
        f"{stack.followup}/v1/followups/{stack.tasks[client]}/reassign",
        json={"assignee": "rm-8"},
    )


async def _clock_post(stack: Stack, role: str, inside: bool) -> httpx.Response:
    return await stack.call(
        role, "POST", f"{stack.followup}/v1/dev/clock", json={"advance_seconds": 0}
    )


def _quality(stack_role: str, inside: bool) -> str:
    if stack_role == "supervisor":
        return "/v1/quality?rm_id=" + ("rm-7" if inside else "rm-9")
    return "/v1/quality" if inside else "/v1/quality?rm_id=rm-9"


async def _quality_probe(stack: Stack, role: str, inside: bool) -> httpx.Response:
    return await stack.call(role, "GET", stack.followup + _quality(role, inside))


async def _consistency(stack: Stack, role: str, inside: bool) -> httpx.Response:
    latest = await stack.http.get(  # not through stack.call: only the probe itself is anonymous
        f"{stack.audit}/v1/audit/checkpoints/latest", headers=stack.headers("auditor")
    )
    size = latest.json()["tree_size"]
    return await stack.call(
        role, "GET", f"{stack.audit}/v1/audit/checkpoints/{size}/consistency/{size}"
    )


def _hold(client: str) -> dict[str, str]:
    return {"client_id": client, "hold_id": f"H-{uuid.uuid4().hex[:8]}", "reason": "litigation"}


async def _place_hold(stack: Stack, role: str, inside: bool) -> httpx.Response:
    return await stack.call(
        role, "POST", f"{stack.audit}/v1/audit/legal-holds", json=_hold(f"{IN}-6")
    )


async def _lift_hold(stack: Stack, role: str, inside: bool) -> httpx.Response:
    hold = _hold(f"{IN}-5")
    placed = (
        await stack.http.post(  # by an auditor, not through stack.call: only the lift is probed
            f"{stack.audit}/v1/audit/legal-holds", json=hold, headers=stack.headers("auditor")
        )
    )
    assert placed.status_code == 201, placed.text
    return await stack.call(
        role,
        "POST",
        f"{stack.audit}/v1/audit/legal-holds/{hold['hold_id']}/lift",
        json={"reason": "matter_closed"},
    )


async def _staff_copy(stack: Stack, role: str, inside: bool) -> httpx.Response:
    """The seeded member of staff's copy (no scope: an admin's alone); waits for followup to
    know them (their staff event is applied apart from the clients' the seed waits for)."""
    url = f"{stack.followup}/v1/staff/rm-7/personal-data?purpose=access%20request"
    if role != "admin":
        return await stack.call(role, "GET", url)

    async def known() -> httpx.Response | None:
        answer = await stack.call(role, "GET", url)
        return None if answer.status_code == 404 else answer

    return await eventually(known, within=30)


PROBES: dict[str, Probe] = {
    "POST /v1/events": _events,
    "POST /v1/events:batch": _batch,
    "GET /v1/streams/{stream_id}/events": _get(
        "intake", lambda inside: f"/v1/streams/client-{IN + '-6' if inside else OUT}/events"
    ),
    "GET /v1/schemas": _get("intake", lambda _: "/v1/schemas"),
    "GET /v1/schemas/envelope": _get("intake", lambda _: "/v1/schemas/envelope"),
    "GET /v1/schemas/{event_type}/v{version}": _get(
        "intake", lambda _: "/v1/schemas/client.registered/v1"
    ),
    "GET /v1/followups": _get(
        "followup", lambda inside: "/v1/followups" + ("" if inside else "?assignee=rm-9")
    ),
    "POST /v1/followups/{task_id}/complete": _complete,
    "POST /v1/followups/{task_id}/reassign": _reassign,
    "GET /v1/clients/{client_id}": _get(
        "followup", lambda inside: f"/v1/clients/{IN + '-6' if inside else OUT}"
    ),
    "GET /v1/quality": _quality_probe,
    "GET /v1/products": _get("intake", lambda _: "/v1/products"),
    "GET /v1/products/{product_id}": _get("intake", lambda _: "/v1/products/P-M1"),
    "GET /v1/staff/{staff_id}": _get("intake", lambda _: "/v1/staff/rm-7"),
    "GET /v1/audit/legal-holds": _get("audit", lambda _: "/v1/audit/legal-holds"),
    "POST /v1/audit/legal-holds": _place_hold,
    "POST /v1/audit/legal-holds/{hold_id}/lift": _lift_hold,
    "GET /v1/statistics/complaints": _get(
        "followup", lambda _: "/v1/statistics/complaints?profile=default"
    ),
    "GET /v1/clients/{client_id}/personal-data": _get(
        "followup",
        lambda inside: (
            f"/v1/clients/{IN + '-6' if inside else OUT}/personal-data?purpose=access%20request"
        ),
    ),
    "GET /v1/staff/{staff_id}/personal-data": _staff_copy,
    "GET /v1/dev/clock": _get("followup", lambda _: "/v1/dev/clock"),
    "POST /v1/dev/clock": _clock_post,
    "GET /v1/audit/entries": _get("audit", lambda _: "/v1/audit/entries"),
    "GET /v1/audit/entries/{position}/proof": _get("audit", lambda _: "/v1/audit/entries/1/proof"),
    "GET /v1/audit/export": _get("audit", lambda _: "/v1/audit/export?format=jsonl"),
    "GET /v1/audit/verify": _get("audit", lambda _: "/v1/audit/verify"),
    "GET /v1/audit/checkpoints/latest": _get("audit", lambda _: "/v1/audit/checkpoints/latest"),
    "GET /v1/audit/checkpoints/{first}/consistency/{second}": _consistency,
    "GET /v1/audit/public-key": _get("audit", lambda _: "/v1/audit/public-key"),
}

OUT_OF_SCOPE = {
    "POST /v1/events": {"branch_system": 403},  # another branch: actor-not-allowed
    "POST /v1/events:batch": {"branch_system": 403},
    "GET /v1/quality": {"rm": 403, "supervisor": 403},
}
"""Out-of-scope answers other than 404 (not client data, or refused before any look-up)."""


def _empty_list(endpoint: str, response: httpx.Response) -> bool:
    return endpoint == "GET /v1/followups" and response.json()["items"] == []


def _out_of_scope_ok(endpoint: str, role: str, response: httpx.Response) -> bool:
    if endpoint == "GET /v1/followups":  # a list: out of scope is simply not in it
        return response.status_code == 200 and response.json()["items"] == []
    return response.status_code == OUT_OF_SCOPE.get(endpoint, {}).get(role, 404)


@pytest.fixture
def matrix_settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(
        infra,
        tmp_path,
        staff_supervisors=TEAM,
        audit_checkpoint_every_entries=1,
        followup_timer_poll_interval_s=0.2,
    )


async def test_every_cell_of_the_matrix_on_the_real_stack(
    matrix_settings: BranchlineSettings,
) -> None:
    tokens = TokenFactory(matrix_settings)
    differences: list[str] = []
    async with real_stack(matrix_settings, tokens) as stack:
        await _seed(stack)
        for endpoint, cells in MATRIX.items():
            probe = PROBES[endpoint]
            anonymous = await probe_without_token(stack, probe)
            if anonymous.status_code != 401:
                differences.append(f"{endpoint} without a token: {anonymous.status_code}")
            for role, cell in zip(ROLES, cells, strict=True):
                inside = await probe(stack, role, True)
                if cell == "no":
                    if inside.status_code != 403:
                        differences.append(f"{endpoint} {role}: {inside.status_code}, not 403")
                    continue
                if not inside.is_success:
                    differences.append(
                        f"{endpoint} {role} in scope: {inside.status_code} {inside.text[:200]}"
                    )
                outside = await probe(stack, role, False)
                if cell == "yes":  # unscoped: the other branch's, team's, RM's too
                    if not outside.is_success or _empty_list(endpoint, outside):
                        differences.append(
                            f"{endpoint} {role} unscoped: {outside.status_code} "
                            f"{outside.text[:200]}"
                        )
                elif not _out_of_scope_ok(endpoint, role, outside):
                    differences.append(
                        f"{endpoint} {role} out of scope: {outside.status_code} "
                        f"{outside.text[:200]}"
                    )
        reads = {
            service: await _reads(url)
            for service, url in (
                ("followup", matrix_settings.followup_database_url),
                ("intake", matrix_settings.intake_database_url),
            )
        }
    assert not differences, "\n".join(differences)
    # Every allowed read of a client's data was recorded, with who read it; refused ones not.
    readers = {f"{IN}-6": ["admin-1", "queue-01", "rm-7", "sup-1"], OUT: ["admin-1"]}
    assert reads == {"followup": readers, "intake": readers}


async def _reads(database_url: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(database_url)
    try:
        found = await conn.fetch(
            "SELECT client_id, envelope->'submitted_by'->>'sub' AS sub FROM es_events "
            "WHERE type = 'client.data_read'"
        )
    finally:
        await conn.close()
    by_client: dict[str, list[str]] = {}
    for row in found:
        by_client.setdefault(row["client_id"], []).append(row["sub"])
    return {client: sorted(subs) for client, subs in by_client.items()}


async def probe_without_token(stack: Stack, probe: Probe) -> httpx.Response:
    """The probe's request with the Authorization header dropped."""
    original = stack.call

    async def anonymous(role: str | None, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await original(None, method, url, **kwargs)

    stack.call = anonymous  # type: ignore[method-assign]
    try:
        return await probe(stack, "admin", True)
    finally:
        stack.call = original  # type: ignore[method-assign]

"""Strict input at every edge (issue #9, findings 1, 5, 6, 7): the three APIs over real HTTP on
the real stack answer hostile input with a 4xx problem+json naming the field, never a 5xx,
and store nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from branchline_audit.bootstrap import create_app as audit_app
from branchline_followup.bootstrap import create_app as followup_app
from branchline_intake.bootstrap import create_app as intake_app
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.stack import Infra, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _event(**extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "client.registered",
        "occurred_at": "2026-11-22T09:00:00+08:00",
        "client_id": "C-strict",
        "branch_id": "BR-001",
        "channel": "walk_in",
        "actor": {"id": "staff-17", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-7"},
    }
    event.update(extra)
    return event


@dataclass
class Apis:
    intake: httpx.AsyncClient
    followup: httpx.AsyncClient
    audit: httpx.AsyncClient
    settings: BranchlineSettings

    async def stored(self) -> int:
        conn = await asyncpg.connect(self.settings.intake_database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM es_events"))
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def apis(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Apis]:
    """The three APIs, started once for the module (every test leaves the stores as it found
    them, or adds only its own clients)."""
    s = make_settings(
        infra,
        tmp_path_factory.mktemp("strict"),
        audit_checkpoint_every_entries=10**9,
        audit_checkpoint_interval_s=3600.0,
    )
    tokens = TokenFactory(s)
    async with (
        serve(intake_app(s)) as intake_url,
        serve(followup_app(s)) as followup_url,
        serve(audit_app(s)) as audit_url,
        httpx.AsyncClient(
            base_url=intake_url,
            headers=tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01"),
            timeout=30,
        ) as intake,
        httpx.AsyncClient(
            base_url=followup_url, headers=tokens.headers(Role.SUPERVISOR, sub="sup-1"), timeout=30
        ) as followup,
        httpx.AsyncClient(
            base_url=audit_url, headers=tokens.headers(Role.AUDITOR), timeout=30
        ) as audit,
    ):
        yield Apis(intake, followup, audit, s)


def _refused(response: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    fields = [e["field"] for e in body.get("errors", [])]
    assert any(f == field or f.endswith("." + field) for f in fields), (field, body)
    return body


async def _post_raw(client: httpx.AsyncClient, path: str, body: str) -> httpx.Response:
    return await client.post(path, content=body, headers={"content-type": "application/json"})


# --- finding 1 and 6: times are RFC 3339 strings inside the representable window -------------


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        ("0001-01-01T00:00:00+00:00", "datetime_window"),  # was stored as -infinity
        ("9999-12-31T23:00:00-05:00", "datetime_window"),  # was OverflowError downstream
        ("1899-12-31T23:59:59Z", "datetime_window"),
        ("2200-01-01T00:00:00Z", "datetime_window"),
        ("2026-11-22T09:00:00+23:59", "datetime_offset"),
        ("2026-11-22T09:00:00", "timezone_aware"),
        ("2026-11-22T09:00:00.1234567Z", "datetime_format"),  # beyond microseconds
        ("2026-11-22 09:00Z", "datetime_format"),
        (12, "datetime_type"),  # was stored as 1970-01-01T00:00:12Z
        (1.5, "datetime_type"),
        (True, "datetime_type"),
    ],
)
async def test_a_time_outside_the_window_or_not_a_string_is_422(
    apis: Apis, value: Any, error_type: str
) -> None:
    before = await apis.stored()
    response = await apis.intake.post("/v1/events", json=_event(occurred_at=value))
    body = _refused(response, 422, "occurred_at")
    assert body["errors"][0]["type"] == error_type
    slot = _event(
        type="appointment.booked",
        data={"appointment_id": "A-1", "slot_start": value, "purpose": "p", "staff_id": "s-1"},
    )
    _refused(await apis.intake.post("/v1/events", json=slot), 422, "data.slot_start")
    assert await apis.stored() == before


async def test_the_window_edges_are_accepted_and_round_trip(apis: Apis) -> None:
    for client, moment, stored in [
        ("C-early", "1900-01-01T00:00:00Z", "1900-01-01T00:00:00Z"),
        ("C-late", "2199-12-31T23:59:59.999999+00:00", "2199-12-31T23:59:59.999999Z"),
        ("C-offset", "2199-12-31T23:00:00-14:00", None),  # UTC 2200: outside
    ]:
        response = await apis.intake.post(
            "/v1/events", json=_event(client_id=client, occurred_at=moment)
        )
        if stored is None:
            _refused(response, 422, "occurred_at")
            continue
        assert response.status_code == 202, response.text
        events = (await apis.intake.get(f"/v1/streams/client-{client}/events")).json()["events"]
        assert events[0]["occurred_at"] == stored


# --- finding 5: NUL and controls never reach PostgreSQL ----------------------------------------


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (_event(correlation_id="abc\u0000def"), "correlation_id"),
        (_event(actor={"id": "staff-17", "role": "tel\u0000ler"}), "actor.role"),
        (
            _event(type="visit.arrived", data={"visit_id": "V-1", "ticket": "A\u0000017"}),
            "data.ticket",
        ),
        (
            _event(
                type="appointment.booked",
                data={
                    "appointment_id": "A-1",
                    "slot_start": "2026-11-23T09:00:00+08:00",
                    "purpose": "loan\u0007",
                    "staff_id": "s-1",
                },
            ),
            "data.purpose",
        ),
        (_event(data={"client_type": "individual", "rm_id": "rm-7\u009b"}), "data.rm_id"),
        (_event(data={"client_type": "individual", "rm_id": "rm-\ud800"}), "data.rm_id"),
    ],
)
async def test_nul_and_control_characters_in_a_body_are_422(
    apis: Apis, event: dict[str, Any], field: str
) -> None:
    before = await apis.stored()
    body = json.dumps(event)  # ensure_ascii: lone surrogates travel as \\ud800
    _refused(await _post_raw(apis.intake, "/v1/events", body), 422, field)
    batch = json.dumps({"events": [event]})
    _refused(await _post_raw(apis.intake, "/v1/events:batch", batch), 422, field)
    assert await apis.stored() == before


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("audit", "/v1/audit/entries?client_id=%00"),
        ("audit", "/v1/audit/entries?purpose=a%01b"),
        ("audit", "/v1/audit/export?client_id=C%00"),
        ("followup", "/v1/followups?client_id=%00"),
        ("followup", "/v1/followups?assignee=rm%E2%80%AE7"),  # U+202E right-to-left override
        ("followup", "/v1/quality?branch_id=%00"),
        ("followup", "/v1/clients/C%00"),
        ("intake", "/v1/streams/client-C%00/events"),
        ("intake", "/v1/streams/client-C/events?from_version=%ff"),
    ],
)
async def test_nul_control_and_bidi_characters_in_parameters_are_422(
    apis: Apis, service: str, path: str
) -> None:
    client: httpx.AsyncClient = getattr(apis, service)
    response = await client.get(path)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"].startswith(("query", "path"))


@pytest.mark.parametrize(
    ("service", "path", "field"),
    [
        ("intake", "/v1/streams/client-C/events?from_version=2147483648", "from_version"),
        ("intake", "/v1/streams/client-C/events?from_version=1.5", "from_version"),
        ("intake", "/v1/streams/client-C/events?limit=0", "limit"),
        ("audit", f"/v1/audit/checkpoints/1/consistency/{2**53}", "second"),
        ("audit", f"/v1/audit/checkpoints/{2**63}/consistency/1", "first"),
        ("audit", f"/v1/audit/entries/{2**64}/proof", "position"),
        ("audit", "/v1/audit/entries?from=9999-12-31T23:00:00-05:00", "from"),
        ("followup", "/v1/followups?due_before=12", "due_before"),
        ("followup", "/v1/followups?limit=100000000000000000000", "limit"),
    ],
)
async def test_integers_and_times_in_parameters_are_range_checked(
    apis: Apis, service: str, path: str, field: str
) -> None:
    client: httpx.AsyncClient = getattr(apis, service)
    _refused(await client.get(path), 422, field)


# --- finding 6: duplicate keys, bidi and zero-width characters in ids --------------------------


async def test_duplicate_keys_are_422_naming_the_key(apis: Apis) -> None:
    before = await apis.stored()
    body = (
        '{"type": "client.registered", "occurred_at": "2026-11-22T09:00:00+08:00",'
        ' "client_id": "C-shown", "client_id": "C-stored", "branch_id": "BR-001",'
        ' "actor": {"id": "s", "role": "teller"},'
        ' "data": {"client_type": "individual", "rm_id": "rm-7"}}'
    )
    response = await _post_raw(apis.intake, "/v1/events", body)
    problem = _refused(response, 422, "client_id")
    assert problem["errors"][0]["type"] == "duplicate_key"
    nested = body.replace('"client_id": "C-stored", ', "").replace(
        '"rm_id": "rm-7"', '"rm_id": "rm-7", "rm_id": "rm-8"'
    )
    _refused(await _post_raw(apis.intake, "/v1/events", nested), 422, "rm_id")
    assert await apis.stored() == before


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\u2066", "\ufeff", "\u00a0"])
async def test_format_characters_in_ids_are_422(apis: Apis, char: str) -> None:
    _refused(
        await apis.intake.post("/v1/events", json=_event(client_id=f"C-{char}1")), 422, "client_id"
    )
    _refused(
        await apis.intake.post(
            "/v1/events", json=_event(actor={"id": "staff-17", "role": f"tel{char}ler"})
        ),
        422,
        "actor.role",
    )
    _refused(
        await apis.intake.post("/v1/events", json=_event(correlation_id=f"corr{char}1")),
        422,
        "correlation_id",
    )


async def test_non_finite_and_huge_numbers_are_422(apis: Apis) -> None:
    for raw in ('{"expected_version": NaN}', '{"expected_version": 1e999}'):
        body = json.dumps(_event())[:-1] + ", " + raw[1:]
        response = await _post_raw(apis.intake, "/v1/events", body)
        assert response.status_code == 422, response.text
    body = json.dumps({**_event(), "expected_version": 10**60})
    assert (await _post_raw(apis.intake, "/v1/events", body)).status_code == 422
    body = json.dumps({**_event(), "expected_version": 2**63})
    _refused(await _post_raw(apis.intake, "/v1/events", body), 422, "expected_version")
    # Beyond ±(2**53 - 1), integer or not, a number is refused where it enters: the audit
    # ledger could not record it verifiably (docs/audit.md), not even in a refusal's record.
    before = await apis.stored()
    for number in ("9007199254740992", "1e16", "9.5e15"):
        body = json.dumps(_event())[:-2] + ', "extra": ' + number + "}}"
        refused = _refused(await _post_raw(apis.intake, "/v1/events", body), 422, "data.extra")
        assert refused["errors"][0]["type"] == "number_out_of_range"
        assert number not in json.dumps(refused)
    assert await apis.stored() == before


async def test_deep_nesting_is_422_not_a_crash(apis: Apis) -> None:
    body = '{"events": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = await _post_raw(apis.intake, "/v1/events:batch", body)
    assert response.status_code == 422, response.text


# --- finding 7: unbounded headers and chunked bodies -------------------------------------------


async def test_an_oversized_header_is_431_at_once(apis: Apis) -> None:
    for client in (apis.intake, apis.followup, apis.audit):
        response = await client.get("/healthz", headers={"x-filler": "a" * 1_000_000})
        assert response.status_code == 431, response.text
        assert response.json()["status"] == 431
    response = await apis.intake.post(
        "/v1/events", json=_event(), headers={"authorization": "Bearer " + "a" * 4_000_000}
    )
    assert response.status_code == 431
    # the server keeps serving
    assert (await apis.intake.get("/healthz")).status_code == 200


async def test_a_chunked_body_over_the_limit_is_413(apis: Apis) -> None:
    limit = apis.settings.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        piece = json.dumps(_event()).encode() + b","
        sent = 0
        while sent <= limit:
            yield piece
            sent += len(piece)
            await asyncio.sleep(0)
        yield json.dumps(_event()).encode() + b"]}"

    before = await apis.stored()
    response = await apis.intake.post(
        "/v1/events:batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["type"].endswith("payload-too-large")
    assert await apis.stored() == before


# --- finding 5: a token whose subject is empty, spaced or too long ------------------------------


@pytest.mark.parametrize("sub", ["", "rm 7", "x" * 129])
async def test_a_token_with_a_bad_subject_is_401_on_intake_and_followup(
    apis: Apis, sub: str
) -> None:
    """Such a token used to make every intake POST and followup action answer 500. It is
    signed with the deployment's own key (the codec refuses to issue it, a forger would not)."""
    tokens = TokenFactory(apis.settings)
    keys = tokens.codec.keys

    def forged(role: Role) -> dict[str, str]:
        claims = jwt.decode(
            tokens.token(role), options={"verify_signature": False}, algorithms=[keys.algorithm]
        )
        token = jwt.encode(
            {**claims, "sub": sub},
            keys.signing_key,
            algorithm=keys.algorithm,
            headers={"kid": keys.signing_kid},
        )
        return {"Authorization": f"Bearer {token}"}

    before = await apis.stored()
    calls = [
        (apis.intake, Role.BRANCH_SYSTEM, "/v1/events", _event(client_id="C-bad-sub")),
        (
            apis.followup,
            Role.RM,
            "/v1/followups/00000000-0000-4000-8000-000000000001/complete",
            {"outcome": "contacted"},
        ),
    ]
    for client, role, path, body in calls:
        response = await client.post(path, json=body, headers=forged(role))
        assert response.status_code == 401, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await apis.stored() == before


async def test_a_completion_note_that_looks_sealed_is_refused(apis: Apis) -> None:
    """Finding 2: the RM's completion note starting with the reserved prefix was stored as
    sent (in clear, never shredded); it is refused before anything is looked up."""
    response = await apis.followup.post(
        "/v1/followups/00000000-0000-4000-8000-000000000002/complete",
        json={"outcome": "contacted", "note": "bl:pii:v1:k1:AAAA:BBBB"},
    )
    body = _refused(response, 422, "note")
    assert body["errors"][0]["type"] == "reserved_prefix"

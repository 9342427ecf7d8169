"""The audit API over real HTTP: queries, masking, recorded reads, proofs, verify, exports."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from branchline_audit.application.context import AuditContext
from branchline_audit.bootstrap import create_app
from branchline_audit.domain.export import bytes_lines, verify_export
from branchline_audit.domain.merkle import verify_consistency, verify_inclusion
from branchline_audit.domain.note import Verifier, open_checkpoint
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    behind_the_ledgers_back,
    event,
    quick_settings,
    random_events,
)
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@dataclass
class Api:
    client: httpx.AsyncClient
    audit: AuditContext
    settings: BranchlineSettings
    tokens: TokenFactory

    async def get(self, path: str, role: Role = Role.AUDITOR, **params: Any) -> httpx.Response:
        return await self.client.get(
            path, params=params, headers=self.tokens.headers(role, sub=f"{role.value}-1")
        )

    async def reads(self) -> list[dict[str, Any]]:
        page = await self.audit.ledger.entries(
            _filters(type="audit.read"), after_position=0, limit=10_000
        )
        return [dict(e.entry.event) for e in page]


def _filters(**kwargs: Any) -> Any:
    from branchline_audit.adapters.ledger import LedgerFilters

    return LedgerFilters(**kwargs)


@pytest.fixture
async def api(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Api]:
    s = quick_settings(settings)
    async with (
        serve(create_app(s)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        audit_context(s) as audit,
    ):
        yield Api(client, audit, s, tokens)


async def _fill(api: Api) -> list[dict[str, Any]]:
    events = [
        event(1, client_id="C-1", branch_id="BR-1", actor_id="staff-1"),
        event(2, event_type="client.personal_data_recorded", client_id="C-1"),
        event(3, event_type="rule.violation_refused", client_id="C-2", data={"rule": "D-05"}),
        event(4, event_type="followup.task_created", client_id="C-2", branch_id="BR-2"),
        event(5, event_type="followup.completed", client_id="C-3", actor_id="rm-7"),
        event(6, event_type="client.personal_data_recorded", client_id="C-3"),
        event(7, event_type="client.erasure_requested", client_id="C-3", data={"reason": "r"}),
    ]
    await append_in_batches(api.audit.ledger, events, now=T0)
    return events


async def test_entries_with_every_filter_and_cursor_paging(api: Api) -> None:
    await _fill(api)

    async def types(**params: Any) -> list[str]:
        response = await api.get("/v1/audit/entries", **params)
        assert response.status_code == 200, response.text
        # reads naming the client are part of its trail too (D-11); set them aside here
        return [
            e["event"]["type"]
            for e in response.json()["entries"]
            if e["event"]["type"] != "audit.read"
        ]

    assert await types(client_id="C-2") == ["rule.violation_refused", "followup.task_created"]
    assert await types(actor_id="rm-7") == ["followup.completed"]
    assert await types(branch_id="BR-2") == ["followup.task_created"]
    assert await types(type="followup.*") == ["followup.task_created", "followup.completed"]
    assert await types(type="rule.violation_refused") == ["rule.violation_refused"]
    window = await types(**{"from": "2026-11-22T09:02:00Z", "to": "2026-11-22T09:04:00Z"})
    assert window == ["client.personal_data_recorded", "rule.violation_refused"]

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = (await api.get("/v1/audit/entries", **params)).json()
        seen += [e["position"] for e in body["entries"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(1, len(seen) + 1))  # ledger order, no gap, no repeat


async def test_personal_fields_are_masked_and_gone_for_restricted_clients(api: Api) -> None:
    await _fill(api)
    body = (await api.get("/v1/audit/entries", client_id="C-1")).json()
    recorded = next(e for e in body["entries"] if e["event"]["type"].endswith("data_recorded"))
    assert recorded["view"] == "masked"
    assert recorded["event"]["data"]["fields"] == {"name": "[redacted]", "phone": "[redacted]"}
    plain = next(e for e in body["entries"] if e["event"]["type"] == "visit.arrived")
    assert plain["view"] == "full"  # nothing personal: shown as hashed, verifiable

    restricted = (await api.get("/v1/audit/entries", client_id="C-3")).json()
    views = {e["event"]["type"]: e for e in restricted["entries"]}
    shown = views["client.personal_data_recorded"]
    assert shown["view"] == "restricted"  # D-04: erasure requested, nobody sees it
    assert "Wang" not in str(restricted)
    assert shown["event"]["data"]["fields"]["name"] == "[restricted]"


async def test_unauthenticated_and_unauthorised_readers_are_refused(api: Api) -> None:
    assert (await api.client.get("/v1/audit/entries")).status_code == 401
    response = await api.get("/v1/audit/entries", role=Role.BRANCH_SYSTEM)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_every_read_is_recorded_with_who_what_and_why(api: Api) -> None:
    await _fill(api)
    await api.get("/v1/audit/entries", client_id="C-1", purpose="complaint K-9 review")
    await api.get("/v1/audit/verify", purpose="quarterly check")
    await api.get("/v1/audit/public-key")
    await api.get("/v1/audit/checkpoints/latest")
    await api.get("/v1/audit/entries/1/proof")
    await api.get("/v1/audit/export", client_id="C-2")
    reads = await api.reads()
    endpoints = [r["data"]["endpoint"] for r in reads]
    assert endpoints == [
        "GET /v1/audit/entries",
        "GET /v1/audit/verify",
        "GET /v1/audit/public-key",
        "GET /v1/audit/checkpoints/latest",
        "GET /v1/audit/entries/{position}/proof",
        "GET /v1/audit/export",
    ]
    first = reads[0]
    assert first["actor"]["id"] == "auditor-1"
    assert first["source"] == "audit"
    assert first["client_id"] == "C-1"
    assert first["data"]["filters"] == {"client_id": "C-1"}
    assert first["data"]["purpose"] == "complaint K-9 review"
    assert reads[1]["data"]["purpose"] == "quarterly check"
    verify = (await api.get("/v1/audit/verify")).json()
    assert verify["ok"] is True  # reads are chained like any entry


async def test_proofs_check_with_only_the_public_key(api: Api) -> None:
    await append_in_batches(api.audit.ledger, random_events(100, random.Random(1)), now=T0)
    key = (await api.get("/v1/audit/public-key")).json()["verifier_key"]
    trusted = Verifier.from_verifier_key(key)
    assert key.startswith("branchline.dev/audit+")

    latest = (await api.get("/v1/audit/checkpoints/latest")).json()
    first = open_checkpoint(latest["checkpoint"], [trusted], origin="branchline.dev/audit")
    assert (first.size, first.root.hex()) == (latest["tree_size"], latest["root_hash"])

    proof = (await api.get("/v1/audit/entries/17/proof")).json()
    assert set(proof) == {
        "position",
        "leaf_index",
        "leaf_hash",
        "tree_size",
        "inclusion_path",
        "checkpoint",
    }
    signed = open_checkpoint(proof["checkpoint"], [trusted], origin="branchline.dev/audit")
    assert proof["leaf_index"] == 16
    assert signed.size == proof["tree_size"]
    assert verify_inclusion(
        16,
        signed.size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(h) for h in proof["inclusion_path"]],
        signed.root,
    )

    # newer entries → a newer checkpoint; the old one is consistent with it
    newest = (await api.get(f"/v1/audit/entries/{signed.size + 2}/proof")).json()
    second = open_checkpoint(newest["checkpoint"], [trusted])
    body = (await api.get(f"/v1/audit/checkpoints/{first.size}/consistency/{second.size}")).json()
    assert body["first"] == first.size
    assert body["second"] == second.size
    path = [bytes.fromhex(h) for h in body["consistency_path"]]
    assert verify_consistency(first.size, second.size, first.root, second.root, path)


async def test_bad_requests_are_clear_problems(api: Api) -> None:
    await _fill(api)
    await api.get("/v1/audit/checkpoints/latest")
    unknown = await api.get("/v1/audit/entries/999/proof")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert "no ledger entry at position 999" in unknown.json()["detail"]
    backwards = await api.get("/v1/audit/checkpoints/9/consistency/3")
    assert backwards.status_code == 422
    not_signed = await api.get("/v1/audit/checkpoints/3/consistency/9")
    assert not_signed.status_code == 404
    window = await api.get(
        "/v1/audit/entries", **{"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    )
    assert window.status_code == 422
    assert (await api.get("/v1/audit/entries", cursor="abc")).status_code == 422
    assert (await api.get("/v1/audit/export", format="xml")).status_code == 422


async def test_verify_reports_the_tampered_position(api: Api) -> None:
    await append_in_batches(api.audit.ledger, random_events(50, random.Random(2)), now=T0)
    assert (await api.get("/v1/audit/verify")).json()["ok"] is True
    await behind_the_ledgers_back(
        api.settings,
        "UPDATE audit_ledger SET event = jsonb_set(coalesce(event, "
        "audit_entry_event(canonical, position)), '{data}', '{\"x\": 1}') "
        "WHERE position = 33",
    )
    body = (await api.get("/v1/audit/verify")).json()
    assert body["ok"] is False
    assert body["first_bad_position"] == 33
    assert body["entries"] > 50  # verification goes on past the bad entry (issue #9)
    assert body["bad_positions"] == [33]
    assert body["bad_count"] == 1


@pytest.mark.parametrize("content", ["jsonl", "csv"])
@pytest.mark.parametrize("filtered", [False, True])
async def test_exports_verify_offline_and_any_changed_byte_is_located(
    api: Api, content: str, filtered: bool
) -> None:
    await _fill(api)
    await append_in_batches(api.audit.ledger, random_events(60, random.Random(3), 10), now=T0)
    params: dict[str, Any] = {"format": content, "purpose": "regulator request 7"}
    if filtered:
        params["client_id"] = "C-1"
    response = await api.get("/v1/audit/export", **params)
    assert response.status_code == 200
    data = response.content
    key = (await api.get("/v1/audit/public-key")).json()["verifier_key"]
    trusted = Verifier.from_verifier_key(key)

    verdict = verify_export(bytes_lines(data), trusted)
    assert verdict.ok, verdict
    assert verdict.complete is (not filtered)
    lines = data.split(b"\n")[:-1]
    assert verdict.entries == len(lines) - (2 if content == "csv" else 1)
    assert b"Wang" not in data  # masked personal fields are not exported (D-04)

    rng = random.Random(content + str(filtered))
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    for offset in rng.sample(range(len(data)), 60):
        tampered = bytearray(data)
        tampered[offset] = (tampered[offset] + rng.randint(1, 255)) % 256
        verdict = verify_export(bytes_lines(bytes(tampered)), trusted)
        line = next(i for i in range(len(lines)) if starts[i] <= offset < starts[i + 1]) + 1
        assert not verdict.ok, offset
        if tampered[offset] == ord("\n") or data[offset] == ord("\n"):
            continue  # a joined or split line: rejected, at that line or the next
        assert verdict.line == line, (offset, verdict)


async def test_the_api_process_signs_checkpoints_in_the_background(
    settings: BranchlineSettings,
) -> None:
    from tests.support.stack import eventually

    s = quick_settings(settings, audit_checkpoint_every_entries=5)
    async with serve(create_app(s)), audit_context(s) as audit:
        await append_in_batches(audit.ledger, random_events(7, random.Random(4)), now=T0)
        latest = await eventually(audit.checkpoints.latest, within=10)
        assert latest.tree_size == 7


async def test_the_api_and_the_console_start_an_export_alike(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    """One ``start_export`` serves ``GET /v1/audit/export`` and the console's export (review
    D6): they share the slots (all taken: 429 with Retry-After for both, nothing recorded),
    each records its read under its own route, and both stream the same kind of download."""
    s = quick_settings(settings)
    app = create_app(s)
    session = {"Cookie": f"bl_session_audit={tokens.token(Role.AUDITOR, sub='auditor-1')}"}
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        audit_context(s) as audit,
    ):
        api = Api(client, audit, s, tokens)
        await _fill(api)

        async def both() -> list[httpx.Response]:
            return [
                await api.get("/v1/audit/export", client_id="C-2", purpose="review"),
                await client.get(
                    "/console/export",
                    params={"purpose": "review", "client_id": "C-2"},
                    headers=session,
                ),
            ]

        slots = app.state.export_slots
        while slots.take():
            pass
        for busy in await both():
            assert busy.status_code == 429, busy.text
            assert busy.headers["retry-after"] == "5"
        assert await api.reads() == []
        for _ in range(slots.limit):
            slots.give_back()
        answers = await both()
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/x-ndjson"
            assert answer.headers["cache-control"] == "no-store"
            assert answer.headers["content-disposition"].startswith('attachment; filename="audit-')
            manifest = json.loads(answer.text.splitlines()[-1])
            assert manifest["manifest"]["purpose"] == "review"
        reads = await api.reads()
        assert [r["data"]["endpoint"] for r in reads] == [
            "GET /v1/audit/export",
            "console GET /export",
        ]
        assert slots.take()  # both streams ended and gave their slots back

"""Generated envelopes, fed to intake over HTTP on the real stack (issue #9): every answer is a
4xx or a 202, never a 5xx, and every event answered 202 reaches the audit trail, which
verifies. ``BRANCHLINE_FUZZ_EXAMPLES`` raises the number of examples (default 120)."""

from __future__ import annotations

import json
import os
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from branchline_audit.domain.verification import LedgerAuditor
from branchline_intake.bootstrap import create_app
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.consumers import audit_consumer
from tests.support.examples import EXAMPLE_PAYLOADS
from tests.support.stack import eventually, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EXAMPLES = int(os.environ.get("BRANCHLINE_FUZZ_EXAMPLES", "120"))

_TYPES = sorted(EXAMPLE_PAYLOADS)
_PIECES = [*string.printable, "\x00", "\u202e", "\u200b", "\ud800", "é", "中", "bl:pii:v1:"]
_HOSTILE_TEXT = st.lists(st.sampled_from(_PIECES), max_size=24).map("".join)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _HOSTILE_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_HOSTILE_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _time(draw: st.DrawFn) -> Any:
    moment = draw(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
    ).replace(tzinfo=UTC)
    minutes = draw(st.integers(min_value=-24 * 60 + 1, max_value=24 * 60 - 1))
    shown = (
        moment.astimezone(timezone(timedelta(minutes=minutes))) if abs(minutes) < 1440 else moment
    )
    return draw(
        st.sampled_from(
            [
                shown.isoformat(),
                moment.isoformat().replace("+00:00", "Z"),
                moment.replace(tzinfo=None).isoformat(),
                "2026-11-22T09:00:00+08:00",
            ]
        )
        | st.integers()
        | _HOSTILE_TEXT
    )


@st.composite
def _valid_registration(draw: st.DrawFn) -> dict[str, Any]:
    """A registration intake must accept: any instant of the window, in any offset in use."""
    moment = draw(
        st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30))
    ).replace(tzinfo=UTC)
    offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
    body: dict[str, Any] = {
        "type": "client.registered",
        "occurred_at": moment.astimezone(offset).isoformat(),
        "client_id": f"C-{uuid.uuid4().hex[:12]}",
        "branch_id": "BR-001",
        "actor": {"id": "staff-1", "role": "teller"},
        "data": {
            "client_type": draw(st.sampled_from(["individual", "corporate"])),
            "rm_id": "rm-1",
        },
    }
    if draw(st.booleans()):
        body["correlation_id"] = draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,20}\Z"))
    return body


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return draw(_valid_registration())
    event_type = draw(st.sampled_from([*_TYPES, "client.registered"]) | _HOSTILE_TEXT)
    data: Any = dict(EXAMPLE_PAYLOADS.get(event_type, {"client_type": "individual"}))
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(data)) | _HOSTILE_TEXT) if data else "x"
        data[key] = draw(_JSON | _time())
    if draw(st.integers(0, 9)) == 0:
        data = draw(_JSON)
    body: dict[str, Any] = {
        "type": event_type,
        "occurred_at": draw(_time()),
        "client_id": draw(
            st.sampled_from(["C-GEN-1", "C-GEN-2", f"C-{uuid.uuid4().hex[:8]}"]) | _HOSTILE_TEXT
        ),
        "branch_id": draw(st.sampled_from(["BR-001"]) | _HOSTILE_TEXT | st.none()),
        "channel": draw(st.sampled_from(["walk_in", "phone", "fax"]) | st.none()),
        "actor": draw(
            st.fixed_dictionaries(
                {
                    "id": st.just("staff-1") | _HOSTILE_TEXT,
                    "role": st.just("teller") | _HOSTILE_TEXT,
                }
            )
            | _JSON
        ),
        "data": data,
    }
    for optional in ("correlation_id", "causation_id", "expected_version", "event_id"):
        if draw(st.integers(0, 4)) == 0:
            body[optional] = draw(_JSON | st.just(str(uuid.uuid4())))
    return body


def _generated() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    @given(envelopes())
    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def collect(body: dict[str, Any]) -> None:
        found.append(body)

    collect()
    return found


async def test_generated_envelopes_are_4xx_or_202_and_every_202_verifies_in_the_audit_trail(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    bodies = _generated()
    accepted: set[str] = set()
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url,
            headers=tokens.headers(Role.BRANCH_SYSTEM, sub="queue-01", branch="BR-001"),
            timeout=30,
        ) as intake,
        audit_consumer(settings) as ledger,
    ):
        for n, body in enumerate(bodies):
            raw = json.dumps(body)  # lone surrogates travel escaped, as a client sends them
            if n % 3 == 0:
                response = await intake.post(
                    "/v1/events:batch",
                    content=json.dumps({"events": [body]}),
                    headers={"content-type": "application/json"},
                )
                assert response.status_code < 500, (body, response.text)
                if response.status_code == 200:
                    (item,) = response.json()["results"]
                    assert item["status"] < 500, (body, item)
                    if item["status"] == 202:
                        accepted.add(item["event_id"])
                continue
            response = await intake.post(
                "/v1/events", content=raw, headers={"content-type": "application/json"}
            )
            assert response.status_code == 202 or 400 <= response.status_code < 500, (
                body,
                response.text,
            )
            if response.status_code == 202:
                accepted.add(response.json()["event_id"])
            else:
                assert response.headers["content-type"].startswith("application/problem+json")
        assert accepted, "the generator should produce some valid envelopes"

        async def all_in_ledger() -> bool:
            ids = {str(e.event["event_id"]) async for e in ledger.scan()}
            return accepted <= ids

        await eventually(all_in_ledger, within=60)
        auditor = LedgerAuditor([], verifier=None, origin="")  # chain and index columns
        async for stored in ledger.scan_stored():
            auditor.feed(stored)
        verdict = auditor.verdict()
    assert verdict.ok, verdict
    assert verdict.bad_positions == ()

"""``POST /v1/events`` answered by a plain ASGI handler past FastAPI's layers (#12,
``entrypoints.direct_submit``): every answer, accepted or refused at any step (token, role,
body, type, rules), is the one FastAPI's own route gives, in the same order: the same status,
the same headers that matter and the same body."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from branchline_intake.bootstrap import create_app
from branchline_intake.entrypoints import direct_submit
from branchline_shared.http.auth import Role, utcnow
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.events import registration_body
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


OCCURRED = datetime(2026, 11, 22, 9, tzinfo=timezone(timedelta(hours=8)))


def registration(client_id: str, **extra: Any) -> dict[str, Any]:
    return registration_body(client_id, None, OCCURRED, **extra)


def requests(tokens: TokenFactory, run: str) -> list[tuple[str, Any, dict[str, str]]]:
    """(what, body, headers): every step of the route refusing, and accepting. A body given
    as bytes is sent as it is."""
    branch = tokens.headers(Role.BRANCH_SYSTEM)
    charset = {**branch, "Content-Type": "application/json; charset=utf-8"}
    resent = str(uuid.uuid5(uuid.NAMESPACE_URL, run))
    rm = tokens.headers(Role.RM, sub="rm-7")
    without = {k: v for k, v in registration(f"C-{run}").items() if k != "actor"}
    return [
        ("no token", registration(f"C-{run}"), {}),
        ("a bad token", registration(f"C-{run}"), {"Authorization": "Bearer not.a.token"}),
        ("a role that may not write", registration(f"C-{run}"), tokens.headers(Role.AUDITOR)),
        ("no token, invalid body", {"type": 5}, {}),
        ("a required field missing", without, branch),
        ("a wrong type", {**registration(f"C-{run}"), "client_id": 5}, branch),
        ("an unknown field", registration(f"C-{run}", colour="red"), branch),
        ("a time without offset", registration(f"C-{run}", occurred_at="2026-11-22T09:00"), branch),
        ("too long an id", registration("C-" + "9" * 300), branch),
        ("not an object", [registration(f"C-{run}")], branch),
        ("a string", "client.registered", branch),
        ("an invalid payload", registration(f"C-{run}", data={"client_type": "robot"}), branch),
        ("a type the caller may not send", registration(f"C-{run}", type="staff.qualified"), rm),
        ("a system event", registration(f"C-{run}", type="rule.violation_refused"), branch),
        ("an unregistered client (D-09)", registration(f"C-{run}-x", type="visit.closed"), branch),
        ("null", None, branch),
        ("not JSON", b'{"type": ', {**branch, "Content-Type": "application/json"}),
        ("a duplicate key", b'{"type": "a", "type": "b"}', {**charset}),
        ("an expired token", registration(f"C-{run}"), expired(tokens)),
        ("accepted", registration(f"C-{run}"), branch),
        ("registered twice (D-09)", registration(f"C-{run}"), branch),
        ("accepted, with a charset", registration(f"C-{run}-c"), charset),
        ("an event with its id", registration(f"C-{run}-e", event_id=resent), branch),
        ("the same event again", registration(f"C-{run}-e", event_id=resent), branch),
    ]


def expired(tokens: TokenFactory) -> dict[str, str]:
    hour_ago = utcnow() - timedelta(hours=1)
    token = tokens.codec.issue(
        "rm-7", [Role.RM], ttl=timedelta(minutes=1), now=hour_ago, audiences=tokens.audiences
    )
    return {"Authorization": f"Bearer {token}"}


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# The headers an answer must have alike both ways (the date, the server's and the correlation
# id's value differ from request to request; that it has one is compared).
HEADERS = (
    "content-type",
    "content-length",
    "www-authenticate",
    "retry-after",
    "cache-control",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
)


def comparable(response: httpx.Response, run: str) -> tuple[int, Any, str]:
    """An answer without what differs between two runs (the run's ids, positions)."""
    body = response.json()
    if response.status_code == 202:
        body = {k: v for k, v in body.items() if k not in {"event_id", "global_position"}}
        text = str(body)
    else:  # a refusal: byte for byte
        text = response.text
    headers = {name: response.headers.get(name) for name in HEADERS}
    if response.status_code == 202:
        headers.pop("content-length")  # the position's digits
    headers["x-correlation-id"] = str("x-correlation-id" in response.headers)
    return response.status_code, headers, _UUID.sub("<id>", text.replace(run, "*"))


async def test_every_answer_is_fastapis_own(
    settings: BranchlineSettings, tokens: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct_calls = 0
    answer = direct_submit._answer

    async def counting(*args: Any) -> Any:
        nonlocal direct_calls
        direct_calls += 1
        return await answer(*args)

    answers: dict[str, list[tuple[str, tuple[int, Any, str]]]] = {}
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("direct", "fastapi"):
            with monkeypatch.context() as patch:
                if path == "direct":
                    patch.setattr(direct_submit, "_answer", counting)
                else:  # every request the general way: FastAPI's own route
                    patch.setattr(direct_submit, "_json_content_type", lambda _: False)
                run = uuid.uuid4().hex[:8]
                answers[path] = []
                for what, body, headers in requests(tokens, run):
                    if isinstance(body, bytes):
                        sent = {"content": body.replace(b"*", run.encode())}
                    else:
                        sent = {"json": body}
                    response = await client.post("/v1/events", headers=headers, **sent)
                    answers[path].append((what, comparable(response, run)))
    for (what, direct), (_, general) in zip(answers["direct"], answers["fastapi"], strict=True):
        assert direct == general, what
    statuses = {what: answer[0] for what, answer in answers["direct"]}
    assert statuses["no token, invalid body"] == 401  # the token before the body
    assert statuses["an expired token"] == 401
    assert statuses["a role that may not write"] == 403
    assert statuses["a wrong type"] == 422
    assert statuses["not JSON"] == 400
    assert statuses["accepted"] == 202
    assert statuses["accepted, with a charset"] == 202
    assert statuses["registered twice (D-09)"] == 409
    assert statuses["an event with its id"] == statuses["the same event again"] == 202
    assert direct_calls >= 15  # the parsed JSON bodies went the direct way


async def test_a_body_of_another_content_type_goes_fastapis_way(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    """Only a plain JSON content type (as FastAPI reads it) takes the direct way; without one,
    FastAPI's rule (strict about the content type) decides, as before."""
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        body = orjson.dumps(registration(f"C-{uuid.uuid4().hex[:8]}"))
        headers = tokens.headers(Role.BRANCH_SYSTEM)
        plain = await client.post("/v1/events", content=body, headers=headers)
        suffixed = await client.post(
            "/v1/events",
            content=orjson.dumps(registration(f"C-{uuid.uuid4().hex[:8]}")),
            headers={**headers, "Content-Type": "application/vnd.branchline+json"},
        )
    assert plain.status_code == 422  # no content type: not read as JSON (FastAPI's rule)
    assert suffixed.status_code == 202, suffixed.text

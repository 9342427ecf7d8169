"""The pure ASGI abuse limits, driven without a server (docs/access-control.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from branchline_audit.application.exporting import ExportSlots
from branchline_shared.http.edge import EdgeOptions, Hardening, ServiceEdge
from branchline_shared.http.rate_limit import RateLimiter, TokenBuckets

pytestmark = pytest.mark.unit


def scope(path: str = "/v1/x", query: bytes = b"", headers: list[Any] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": headers or [],
        "client": ("10.0.0.1", 5000),
    }


async def call(app: Any, s: Scope) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(s, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def hardened(
    app: Any,
    *,
    max_query_bytes: int = 2048,
    max_query_params: int = 30,
    timeout_s: float = 5,
    rate_limiter: RateLimiter | None = None,
) -> ServiceEdge:
    """``app`` behind the services' edge middleware with the abuse limits on."""
    limits = Hardening(max_query_bytes, max_query_params, timeout_s, rate_limiter)
    return ServiceEdge(app, EdgeOptions("test", max_body_bytes=1_000_000, hardening=limits))


def test_token_buckets_allow_a_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_s=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.wait_for("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.wait_for("k") == pytest.approx(0.5)
    assert buckets.wait_for("other") == 0.0
    now[0] = 0.5
    assert buckets.wait_for("k") == 0.0


async def test_rate_limit_answers_429_problem_with_retry_after_and_never_calls_the_app() -> None:
    calls = 0

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1
        await ok_app(scope, receive, send)

    now = [0.0]
    limiter = RateLimiter(
        token_per_s=0.25,
        token_burst=2,
        address_per_s=100,
        address_burst=100,
        clock=lambda: now[0],
    )
    app = hardened(counting, rate_limiter=limiter)
    token = [(b"authorization", b"Bearer a")]
    assert [(await call(app, scope(headers=token)))[0] for _ in range(2)] == [200, 200]
    status, headers, body = await call(app, scope(headers=token))
    assert status == 429
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"retry-after"] == b"4"
    assert orjson.loads(body)["type"].endswith("rate-limited")
    assert calls == 2
    assert (await call(app, scope(headers=[(b"authorization", b"Bearer b")])))[0] == 200
    assert (await call(app, scope("/healthz", headers=token)))[0] == 200  # never limited


async def test_rate_limit_per_address() -> None:
    limiter = RateLimiter(token_per_s=100, token_burst=100, address_per_s=1, address_burst=1)
    app = hardened(ok_app, rate_limiter=limiter)
    assert (await call(app, scope()))[0] == 200
    assert (await call(app, scope()))[0] == 429


async def test_query_string_bounds() -> None:
    app = hardened(ok_app, max_query_bytes=100, max_query_params=3, timeout_s=5)
    assert (await call(app, scope(query=b"a=1&b=2&c=3")))[0] == 200
    status, _headers, body = await call(app, scope(query=b"a=1&b=2&c=3&d=4"))
    assert status == 414
    assert orjson.loads(body)["errors"][0]["field"] == "query"
    assert (await call(app, scope(query=b"a=" + b"x" * 200)))[0] == 414


async def test_a_request_not_answered_in_time_is_a_503_problem() -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(10)

    app = hardened(slow, max_query_bytes=100, max_query_params=3, timeout_s=0.05)
    status, _headers, body = await asyncio.wait_for(call(app, scope()), timeout=5)
    assert status == 503
    assert orjson.loads(body)["type"].endswith("timeout")


async def test_an_answer_that_started_in_time_may_stream_longer() -> None:
    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"late"})

    app = hardened(streaming, max_query_bytes=100, max_query_params=3, timeout_s=0.05)
    status, _headers, body = await asyncio.wait_for(call(app, scope()), timeout=5)
    assert (status, body) == (200, b"late")


async def test_security_headers_everywhere_and_csp_on_docs() -> None:
    app = hardened(ok_app)
    _, headers, _ = await call(app, scope("/v1/clients/C-1"))
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"cache-control"] == b"no-store"
    assert b"content-security-policy" not in headers
    _, headers, _ = await call(app, scope("/docs"))
    assert b"script-src 'self'" in headers[b"content-security-policy"]
    assert b"unsafe-inline" not in headers[b"content-security-policy"].split(b";")[1]
    _, headers, _ = await call(app, scope("/docs/assets/swagger-ui.css"))
    assert b"cache-control" not in headers  # static assets may be cached


async def test_export_slots_cap_and_release_when_the_stream_ends() -> None:
    slots = ExportSlots(1)
    assert slots.take()
    assert not slots.take()

    async def lines() -> Any:
        yield "a"
        yield "b"

    assert [line async for line in slots.held_while(lines())] == ["a", "b"]
    assert slots.take()  # released by the finished stream
    abandoned = slots.held_while(lines())
    assert await abandoned.__anext__() == "a"
    await abandoned.aclose()  # a client that went away
    assert slots.take()


async def test_the_edge_answers_of_its_own_have_security_headers_and_no_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One middleware does what seven layers did (#12): its own refusals carry the security
    headers and are logged, as when the limits were the outer layers; only what reaches the
    app gets a correlation id; a chunked body over the limit replaces the app's answer."""

    async def reading(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await ok_app(scope, receive, send)

    limits = Hardening(100, 3, 5, access_log=True)
    app = ServiceEdge(reading, EdgeOptions("edge-test", max_body_bytes=10, hardening=limits))
    too_long = [b'{"a":', b'"0123456789"}']

    async def post(
        headers: list[Any], query: bytes = b"", chunks: list[bytes] = too_long
    ) -> tuple[int, dict[bytes, bytes]]:
        sent: list[Message] = []
        pending = list(chunks)

        async def receive() -> Message:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending)}

        async def send(message: Message) -> None:
            sent.append(message)

        s = {**scope(query=query, headers=headers), "method": "POST"}
        await app(s, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    json_body = [(b"content-type", b"application/json")]
    with caplog.at_level("INFO", logger="branchline.access"):
        answers = [
            await post(json_body, query=b"a=1&b=2&c=3&d=4"),  # 414
            await post([*json_body, (b"content-length", b"11")]),  # 413, declared
            await post(json_body),  # 413, while reading the chunked body
            await post(
                [(b"content-type", b"text/plain"), (b"x-correlation-id", b"c-1")], chunks=[b"ok"]
            ),
        ]
    assert [status for status, _ in answers] == [414, 413, 413, 200]
    for _status, headers in answers:
        assert headers[b"x-content-type-options"] == b"nosniff"
        assert headers[b"cache-control"] == b"no-store"
    assert [b"x-correlation-id" in headers for _, headers in answers] == [False] * 3 + [True]
    assert answers[3][1][b"x-correlation-id"] == b"c-1"
    logged = [r for r in caplog.records if r.name == "branchline.access"]
    assert [(r.status, r.correlation_id) for r in logged] == [  # type: ignore[attr-defined]
        (414, None),
        (413, None),
        (413, None),
        (200, "c-1"),
    ]

"""The edge's steps that had no direct test of their own (``edge.ServiceEdge``, #12): the
strict check's 422 at the edge, the timeout step leaving a late failure to the server, the
app's answer to a cut-off body dropped but counted, the access log's correlation id, a
non-HTTP scope and an edge without the abuse limits. Driven as plain ASGI, without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

from branchline_shared.http.edge import EdgeOptions, Hardening, ServiceEdge
from branchline_shared.http.service_app import create_service_app, serve_directly
from branchline_shared.http.strict_input import PARSED_BODY
from branchline_shared.logging_setup import correlation_id_var

pytestmark = pytest.mark.unit


class Route:
    """What Starlette's router leaves in the scope: the matched template."""

    def __init__(self, path: str) -> None:
        self.path = path


def request(
    method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None,
    path: str = "/v1/things",
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers or [],
        "client": ("10.0.0.1", 5000),
    }


async def exchange(
    edge: ServiceEdge, scope: Scope, chunks: list[bytes] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    pending = list(chunks or [b""])
    sent: list[Message] = []

    async def receive() -> Message:
        if not pending:
            return {"type": "http.disconnect"}
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    await edge(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent)


def edge_of(app: Any, service: str, *, hardened: bool = True, max_body: int = 1000) -> ServiceEdge:
    limits = Hardening(2048, 30, 5, access_log=True) if hardened else None
    return ServiceEdge(app, EdgeOptions(service, max_body_bytes=max_body, hardening=limits))


def counted(service: str, route: str, status: str) -> float:
    labels = {"service": service, "method": "POST", "route": route, "status": status}
    return REGISTRY.get_sample_value("branchline_http_requests_total", labels) or 0.0


async def test_a_body_the_strict_check_refuses_is_a_422_of_the_edge_never_seen_by_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)
        scope["route"] = Route("/v1/things")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    service = f"edge-{uuid.uuid4().hex[:6]}"
    edge = edge_of(app, service)
    json_type = [(b"content-type", b"application/json"), (b"x-correlation-id", b"c-9")]
    with caplog.at_level("INFO", logger="branchline.access"):
        status, headers, body = await exchange(edge, request(headers=json_type), [b'{"a":1,"a":2}'])
        ok_status, ok_headers, _ = await exchange(edge, request(headers=json_type), [b'{"a":1}'])
    assert status == 422
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert b"x-correlation-id" not in headers
    assert orjson.loads(body)["errors"][0]["type"] == "duplicate_key"
    assert (ok_status, ok_headers[b"x-correlation-id"]) == (200, b"c-9")
    assert len(called) == 1
    assert called[0][PARSED_BODY] == {"a": 1}  # the clean body, parsed once, for the route
    assert counted(service, "/v1/things", "422") == 0  # the edge's own answer: not counted
    assert counted(service, "/v1/things", "200") == 1
    logged = [r for r in caplog.records if r.name == "branchline.access"]
    # The refused request's line has the correlation id it was sent with (it got none back).
    assert [(r.status, r.correlation_id) for r in logged] == [  # type: ignore[attr-defined]
        (422, "c-9"),
        (200, "c-9"),
    ]


async def test_a_timeout_after_the_answer_started_is_left_to_the_server() -> None:
    """The 503 is for an answer that did not start in time; a ``TimeoutError`` after the
    start cannot be answered again, so it goes on up (the server closes the connection)."""

    async def late_failure(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise TimeoutError

    edge = edge_of(late_failure, "edge-late")
    with pytest.raises(TimeoutError):
        await exchange(edge, request("GET"))


async def test_the_apps_answer_to_a_cut_off_body_is_replaced_by_the_413_and_counted_as_the_apps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A route that catches the cut-off (as FastAPI's exception handlers do) and answers:
    the client gets the 413 alone; the metrics count what the app answered."""

    async def forgiving(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = Route("/v1/uploads")
        try:
            while (await receive()).get("more_body"):
                pass
        except Exception:
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"half a body"})

    service = f"edge-{uuid.uuid4().hex[:6]}"
    edge = edge_of(forgiving, service, max_body=10)
    plain = [(b"content-type", b"text/plain")]
    with caplog.at_level("INFO", logger="branchline.access"):
        status, headers, body = await exchange(edge, request(headers=plain), [b"0123456", b"789ab"])
    assert status == 413
    assert b"half a body" not in body
    assert orjson.loads(body)["type"].endswith("payload-too-large")
    assert b"x-correlation-id" not in headers  # the answer is the edge's
    assert counted(service, "/v1/uploads", "400") == 1
    (line,) = [r for r in caplog.records if r.name == "branchline.access"]
    assert line.status == 413  # type: ignore[attr-defined]


async def test_the_access_log_has_the_correlation_id_the_answer_carried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    edge = edge_of(app, "edge-log")
    with caplog.at_level("INFO", logger="branchline.access"):
        _, headers, _ = await exchange(edge, request("GET"))
    made = headers[b"x-correlation-id"].decode()
    assert uuid.UUID(made)
    (line,) = [r for r in caplog.records if r.name == "branchline.access"]
    assert (line.status, line.correlation_id) == (204, made)  # type: ignore[attr-defined]
    assert correlation_id_var.get() is None


async def test_only_http_goes_through_the_steps() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    edge = edge_of(app, "edge-lifespan")

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is answered for a lifespan scope")

    await edge({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


async def test_without_the_abuse_limits_no_security_headers_no_log_no_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def slowish(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    edge = edge_of(slowish, "edge-plain", hardened=False)
    long_query = {**request("GET"), "query_string": b"&".join([b"a=1"] * 100)}
    with caplog.at_level("INFO", logger="branchline.access"):
        status, headers, _ = await exchange(edge, long_query)
    assert status == 200  # no query bounds either
    assert b"x-content-type-options" not in headers
    assert b"x-correlation-id" in headers
    assert not [r for r in caplog.records if r.name == "branchline.access"]


async def test_a_direct_route_is_called_after_the_steps_with_the_app_to_hand_back_to() -> None:
    """``serve_directly``'s routes (#12): called for their method and path only, after the
    strict check and with the correlation id and the metrics, with the app as the way back;
    every other request (another method, a mounted app's root path) goes to the app."""
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(f"app {scope['method']}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    async def direct(scope: Scope, receive: Receive, send: Send, general: Any) -> None:
        if scope[PARSED_BODY] == {"back": True}:
            await general(scope, receive, send)
            return
        reached.append(f"direct {correlation_id_var.get()}")
        scope["route"] = Route("/v1/things")
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"direct"})

    service = f"edge-{uuid.uuid4().hex[:6]}"
    edge = ServiceEdge(
        app,
        EdgeOptions(service, 1000, direct={("POST", "/v1/things"): direct}),
    )
    json_type = [(b"content-type", b"application/json"), (b"x-correlation-id", b"c-5")]
    answers = [
        await exchange(edge, request(headers=json_type), [b'{"a":1}']),
        await exchange(edge, request(headers=json_type), [b'{"back":true}']),
        await exchange(edge, request("PUT", headers=json_type), [b'{"a":1}']),
        await exchange(edge, {**request(headers=json_type), "root_path": "/api"}, [b"{}"]),
        await exchange(edge, request(headers=json_type), [b'{"a":1,"a":1}']),
    ]
    assert [status for status, _, _ in answers] == [202, 200, 200, 200, 422]
    assert answers[0][1][b"x-correlation-id"] == b"c-5"
    assert reached == ["direct c-5", "app POST", "app PUT", "app POST"]
    assert counted(service, "/v1/things", "202") == 1


def test_direct_routes_are_declared_before_the_app_starts() -> None:
    @contextlib.asynccontextmanager
    async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    async def direct(scope: Scope, receive: Receive, send: Send, general: Any) -> None:
        await general(scope, receive, send)

    app = create_service_app(service="t", title="t", lifespan=no_lifespan, max_body_bytes=10)
    serve_directly(app, "POST", "/x", direct)
    assert app.state.edge.direct == {("POST", "/x"): direct}
    app.middleware_stack = app.build_middleware_stack()
    with pytest.raises(RuntimeError):
        serve_directly(app, "POST", "/y", direct)


async def test_each_answer_is_counted_and_timed_in_its_routes_series_every_time() -> None:
    """The series are looked up once per route and status (#12): later answers still land
    in the series of their own status, and every answer is timed."""
    statuses = [200, 200, 404, 200]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = Route("/v1/things")
        await send({"type": "http.response.start", "status": statuses.pop(0), "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    service = f"edge-{uuid.uuid4().hex[:6]}"
    edge = edge_of(app, service)
    for _ in range(4):
        await exchange(edge, request(), [b""])
    assert counted(service, "/v1/things", "200") == 3
    assert counted(service, "/v1/things", "404") == 1
    timed = {"service": service, "method": "POST", "route": "/v1/things"}
    assert REGISTRY.get_sample_value("branchline_http_request_seconds_count", timed) == 4

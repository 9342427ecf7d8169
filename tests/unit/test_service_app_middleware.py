"""The common HTTP middleware (pure ASGI): correlation ids and per-route metrics, also for
answers the route did not produce (404, 413, a crash answered 500 by the server)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.middleware.errors import ServerErrorMiddleware

from branchline_shared.http.edge import EdgeOptions, ServiceEdge
from branchline_shared.http.service_app import create_service_app, without_idle_telemetry
from branchline_shared.logging_setup import correlation_id_var

pytestmark = pytest.mark.unit


@contextlib.asynccontextmanager
async def _no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def _app(service: str) -> FastAPI:
    app = create_service_app(service=service, title="t", lifespan=_no_lifespan, max_body_bytes=2048)

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        return {"id": thing_id, "cid": correlation_id_var.get()}

    @app.post("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return app


def _count(service: str, route: str, status: str, method: str = "GET") -> float:
    value = REGISTRY.get_sample_value(
        "branchline_http_requests_total",
        {"service": service, "method": method, "route": route, "status": status},
    )
    return value or 0.0


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_a_given_correlation_id_is_in_the_logging_context_and_on_the_answer() -> None:
    async with _client(_app("svc-a")) as client:
        answer = await client.get("/things/7", headers={"x-correlation-id": "req-42"})
    assert answer.status_code == 200
    assert answer.headers["x-correlation-id"] == "req-42"
    assert answer.json() == {"id": "7", "cid": "req-42"}


async def test_without_one_a_correlation_id_is_made_and_not_leaked_to_the_next_request() -> None:
    async with _client(_app("svc-b")) as client:
        first = await client.get("/things/1")
        second = await client.get("/things/2")
    made = first.headers["x-correlation-id"]
    assert uuid.UUID(made)
    assert first.json()["cid"] == made
    assert second.headers["x-correlation-id"] != made
    assert correlation_id_var.get() is None  # reset after each request


async def test_metrics_count_each_route_template_with_its_status() -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    async with _client(_app(service)) as client:
        await client.get("/things/1")
        await client.get("/things/2")
        missing = await client.get("/nowhere")
        crashed = await client.post("/crash")
        too_big = await client.post("/crash", content=b"x" * 4096)
    assert missing.status_code == 404
    assert crashed.status_code == 500
    assert too_big.status_code == 413
    assert _count(service, "/things/{thing_id}", "200") == 2
    assert _count(service, "unmatched", "404") == 1
    assert _count(service, "/crash", "500", method="POST") == 1


def _layers(app: FastAPI) -> list[type]:
    """The classes of the app's built middleware stack, outermost first, down to the edge."""
    layer: object = app.build_middleware_stack()
    seen: list[type] = []
    while layer is not None and not isinstance(layer, ServiceEdge):
        seen.append(type(layer))
        layer = getattr(layer, "app", None)
    seen.append(type(layer))
    return seen


def test_the_stack_has_no_exception_telemetry_layer_with_telemetry_off() -> None:
    # Round 29 (#12): FastAPI's exception-telemetry layer does nothing with telemetry off
    # and cost every request a frame; the server-error middleware sits right above the edge.
    assert _layers(_app("svc-layers")) == [ServerErrorMiddleware, ServiceEdge]


def test_a_stack_with_another_layer_below_the_server_errors_is_left_as_it_is() -> None:
    inner = ServiceEdge(_app("svc-other"), EdgeOptions(service="svc-other", max_body_bytes=1))
    stack = ServerErrorMiddleware(inner)
    assert without_idle_telemetry(stack) is stack
    assert stack.app is inner


async def test_a_crash_is_still_answered_500_by_the_server_error_middleware() -> None:
    async with _client(_app("svc-crash")) as client:
        crashed = await client.post("/crash")
        after = await client.get("/things/3")
    assert crashed.status_code == 500
    assert after.status_code == 200  # the app serves on


async def test_an_http_request_does_not_ask_whether_telemetry_is_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Round 29 (#12): with telemetry off the answer is always no; the first request builds
    # the stack FastAPI's way, every later one goes straight into it.
    app = _app("svc-asks")
    asked: list[str] = []
    native = type(app._native_telemetry)
    original = native.enabled

    def enabled(self: object) -> bool:
        asked.append("enabled")
        return original(self)  # type: ignore[arg-type]

    monkeypatch.setattr(native, "enabled", enabled)
    async with _client(app) as client:
        first = await client.get("/things/1")
        asked_first = len(asked)
        later = [await client.get(f"/things/{i}") for i in range(2, 5)]
        crashed = await client.post("/crash")
    assert first.status_code == 200
    assert [a.status_code for a in later] == [200, 200, 200]
    assert crashed.status_code == 500
    assert len(asked) == asked_first  # none after the stack was built

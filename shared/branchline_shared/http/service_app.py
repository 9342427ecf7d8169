"""What every Branchline HTTP service has in common: problem+json errors, bearer auth,
``/healthz``, ``/readyz``, ``/metrics``, a request-size limit, correlation ids and metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchline_shared.http.docs_assets import install_docs
from branchline_shared.http.graceful import is_draining
from branchline_shared.http.problems import PROBLEM_JSON, Problem, install_problem_handlers
from branchline_shared.http.strict_input import StrictInput
from branchline_shared.logging_setup import correlation_id_var

ReadinessCheck = Callable[[], Awaitable[bool]]

REQUESTS = Counter(
    "branchline_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "branchline_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class CorrelateAndMeasure:
    """Correlation id (``x-correlation-id``, taken from the request or made) in the logging
    context and on the answer; latency and count per route in the metrics.

    Pure ASGI, not ``BaseHTTPMiddleware``: that one runs the route in a second task and
    streams the answer through a memory channel, which cost more CPU per request than the
    route itself on a small machine."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = _header(scope, b"x-correlation-id") or str(uuid.uuid4())
        cid_header = (b"x-correlation-id", cid.encode("latin-1"))
        status = 500  # what the server answers when the app raises before answering

        async def send_correlated(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), cid_header]}
            await send(message)

        token = correlation_id_var.set(cid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_correlated)
        finally:
            correlation_id_var.reset(token)
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)
            REQUESTS.labels(self.service, method, path, str(status)).inc()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class BodySizeLimit:
    """Refuses bodies above ``max_bytes`` with 413 before the route reads them: a declared
    ``Content-Length`` at once, a chunked body as soon as it grows past the limit (whatever
    the route would have answered to the cut-off body is dropped)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the route's answer to a cut-off body: replaced by the 413
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = Problem(
            413,
            "Payload too large",
            f"the body exceeds {self.max_bytes} bytes",
            kind="payload-too-large",
        ).body()
        response = JSONResponse(body, status_code=413, media_type=PROBLEM_JSON)
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_service_app(
    *,
    service: str,
    title: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    max_body_bytes: int,
    description: str = "",
) -> FastAPI:
    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,  # served from packaged assets, not a CDN (install_docs)
        redoc_url=None,
        # FastAPI's native OpenTelemetry, which Branchline does not configure (its metrics are
        # Prometheus', its logs JSON lines): switched off, otherwise every request asks the
        # global tracer, meter and logger providers whether they were configured (≈ 2.5 % of
        # intake's CPU on single events, #12).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_docs(app)
    app.state.service = service
    app.state.readiness_checks = {}
    install_problem_handlers(app)
    app.include_router(health_router())

    app.add_middleware(CorrelateAndMeasure, service=service)
    app.add_middleware(StrictInput)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app


def health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Dependencies (PostgreSQL, the broker) are reachable")
    async def readyz(request: Request) -> JSONResponse:
        if is_draining(request.app.state):  # stopping: no new work for this instance
            return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
        checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
        results: dict[str, bool] = {}
        for name, check in checks.items():
            results[name] = await check()
        ready = bool(checks) and all(results.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router

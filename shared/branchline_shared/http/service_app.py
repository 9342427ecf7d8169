"""What every Branchline HTTP service has in common: problem+json errors, bearer auth,
``/healthz``, ``/readyz``, ``/metrics``, a request-size limit, the strict input check,
correlation ids and metrics (the last four in ``edge.ServiceEdge``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from fastapi.telemetry._asgi import ExceptionTelemetryMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from branchline_shared.http.docs_assets import install_docs
from branchline_shared.http.edge import DirectRoute, EdgeOptions, ServiceEdge
from branchline_shared.http.graceful import is_draining
from branchline_shared.http.problems import install_problem_handlers

ReadinessCheck = Callable[[], Awaitable[bool]]

# FastAPI's native OpenTelemetry, which Branchline does not configure (its metrics are
# Prometheus', its logs JSON lines): switched off, otherwise every request asks the global
# tracer, meter and logger providers whether they were configured (≈ 2.5 % of intake's CPU on
# single events, #12).
_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class _ServiceApp(FastAPI):
    """A FastAPI app without the one layer its switched-off telemetry leaves in every
    request's way (#12, Round 29): FastAPI 0.163 puts ``ExceptionTelemetryMiddleware`` right
    below the server-error middleware whatever the configuration; it catches every exception
    only to hand it to the request's telemetry, which with tracing, metrics and logs off is
    never made (``_exception`` returns at once), and re-raise it. Without it the server-error
    middleware sees the same exceptions, one frame and one coroutine fewer per request."""

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return without_idle_telemetry(stack)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An HTTP request straight into the built stack, as Starlette's ``__call__`` does it
        # (Round 29, #12): FastAPI's own first asks, per request, whether its native telemetry
        # is enabled, which with :data:`_TELEMETRY_OFF` it never is, and then calls
        # Starlette's, one frame more. The rest (lifespan, websockets, a root path, the first
        # request, which builds the stack) goes FastAPI's way, as before.
        stack = self.middleware_stack
        if scope["type"] == "http" and stack is not None and not self.root_path:
            scope["app"] = self
            await stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def without_idle_telemetry(stack: ASGIApp) -> ASGIApp:
    """``stack`` with the exception-telemetry layer under its server-error middleware taken
    out (only ever built with :data:`_TELEMETRY_OFF`); any other stack as it is."""
    if isinstance(stack, ServerErrorMiddleware) and isinstance(
        stack.app, ExceptionTelemetryMiddleware
    ):
        stack.app = stack.app.app
    return stack


def create_service_app(
    *,
    service: str,
    title: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    max_body_bytes: int,
    description: str = "",
) -> FastAPI:
    app = _ServiceApp(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,  # served from packaged assets, not a CDN (install_docs)
        redoc_url=None,
        telemetry=_TELEMETRY_OFF,  # see _TELEMETRY_OFF and _ServiceApp
    )
    install_docs(app)
    app.state.service = service
    app.state.readiness_checks = {}
    install_problem_handlers(app)
    app.include_router(health_router())

    # One middleware for the body limit, the strict input check, correlation ids and metrics;
    # install_hardening adds the abuse limits to the same one (edge.py: one frame and one
    # wrapper around ``send`` per request instead of seven).
    app.state.edge = EdgeOptions(service=service, max_body_bytes=max_body_bytes)
    app.add_middleware(ServiceEdge, options=app.state.edge)
    return app


def serve_directly(app: FastAPI, method: str, path: str, handler: DirectRoute) -> None:
    """Answer ``method path`` with ``handler``, a plain ASGI handler called by the edge after
    its steps (limits, strict input, correlation id: the same as for every route) instead of
    the app's own layers (exception middleware, exit stack, routing, FastAPI's request
    handling), which cost a busy route about a sixth of its CPU (#12). The route stays
    declared in the app (OpenAPI); the handler hands the app any request it does not take
    and answers the ones it takes exactly as the route would (the service's test)."""
    if app.middleware_stack is not None:  # read when the stack is built, as add_middleware
        raise RuntimeError("serve_directly after the app started")
    options: EdgeOptions = app.state.edge
    options.direct[(method, path)] = handler


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

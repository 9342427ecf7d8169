"""The abuse limits of every HTTP service, installed from settings (docs/access-control.md):
rate limits, request bounds and timeout, the access log and security headers. Called once per
app after ``create_service_app``, before the app starts; they run in the app's one edge
middleware (``edge.ServiceEdge``), rate limits first, and security headers reach every
answer, 429s and 413s included."""

from __future__ import annotations

from fastapi import FastAPI

from branchline_shared.http.edge import EdgeOptions, Hardening
from branchline_shared.http.rate_limit import RateLimiter
from branchline_shared.settings import CommonSettings


def install_hardening(app: FastAPI, settings: CommonSettings, *, service: str) -> None:
    if app.middleware_stack is not None:  # as add_middleware: read when the stack is built
        raise RuntimeError("install_hardening after the app started")
    options: EdgeOptions = app.state.edge
    options.service = service
    options.hardening = Hardening(
        max_query_bytes=settings.max_query_bytes,
        max_query_params=settings.max_query_params,
        timeout_s=settings.request_timeout_s,
        rate_limiter=RateLimiter(
            token_per_s=settings.rate_limit_token_per_s,
            token_burst=settings.rate_limit_token_burst,
            address_per_s=settings.rate_limit_address_per_s,
            address_burst=settings.rate_limit_address_burst,
        )
        if settings.rate_limit_enabled
        else None,
        access_log=settings.access_log_enabled,
    )

"""The abuse limits of every HTTP service, installed from settings (docs/access-control.md):
request bounds and timeout, rate limits, the access log and security headers, each a pure
ASGI middleware in its own module. Called once per app after ``create_service_app``; the
last added runs first, so security headers reach every answer, 429s and 413s included."""

from __future__ import annotations

from fastapi import FastAPI

from branchline_shared.http.access_log import AccessLog
from branchline_shared.http.rate_limit import RateLimit
from branchline_shared.http.request_limits import RequestLimits
from branchline_shared.http.security_headers import SecurityHeaders
from branchline_shared.settings import CommonSettings


def install_hardening(app: FastAPI, settings: CommonSettings, *, service: str) -> None:
    app.add_middleware(
        RequestLimits,
        max_query_bytes=settings.max_query_bytes,
        max_query_params=settings.max_query_params,
        timeout_s=settings.request_timeout_s,
    )
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimit,
            token_per_s=settings.rate_limit_token_per_s,
            token_burst=settings.rate_limit_token_burst,
            address_per_s=settings.rate_limit_address_per_s,
            address_burst=settings.rate_limit_address_burst,
        )
    if settings.access_log_enabled:
        app.add_middleware(AccessLog, service=service)
    app.add_middleware(SecurityHeaders)

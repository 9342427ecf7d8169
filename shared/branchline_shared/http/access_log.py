"""The access log (docs/access-control.md, "Abuse limits"), pure ASGI: one JSON line per
request on the ``branchline.access`` logger, with who called (the token's subject, roles and
branch, once verified), the route template (never the raw path or any query value: they
hold client ids and search terms), the status, the latency and the correlation id."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("branchline.access")


class AccessLog:
    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        correlation: str | None = _header(scope.get("headers"), b"x-correlation-id")

        async def observed(message: Message) -> None:
            nonlocal status, correlation
            if message["type"] == "http.response.start":
                status = message["status"]
                correlation = _header(message.get("headers"), b"x-correlation-id") or correlation
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            log.info("request", extra=self._entry(scope, status, started, correlation))

    def _entry(
        self, scope: Scope, status: int, started: float, correlation: str | None
    ) -> dict[str, Any]:
        route = getattr(scope.get("route"), "path", None)
        entry: dict[str, Any] = {
            "access": True,
            "http_service": self.service,
            "method": scope.get("method"),
            "route": route or "unmatched",
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "correlation_id": correlation,
        }
        principal = (scope.get("state") or {}).get("principal")
        if principal is not None:
            entry["sub"] = principal.subject
            entry["roles"] = sorted(r.value for r in principal.roles)
            if principal.branch_id is not None:
                entry["branch_id"] = principal.branch_id
        return entry


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers or ():
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return None

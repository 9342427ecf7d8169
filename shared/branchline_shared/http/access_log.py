"""The access log (docs/access-control.md, "Abuse limits"), written by the services' edge
middleware (``edge.ServiceEdge``): one JSON line per request on the ``branchline.access``
logger, with who called (the token's subject, roles and branch, once verified), the route
template (never the raw path or any query value: they hold client ids and search terms), the
status, the latency and the correlation id."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import Scope

log = logging.getLogger("branchline.access")


def log_access(
    service: str, scope: Scope, status: int, started: float, correlation: str | None
) -> None:
    log.info("request", extra=access_entry(service, scope, status, started, correlation))


def access_entry(
    service: str, scope: Scope, status: int, started: float, correlation: str | None
) -> dict[str, Any]:
    route = getattr(scope.get("route"), "path", None)
    entry: dict[str, Any] = {
        "access": True,
        "http_service": service,
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

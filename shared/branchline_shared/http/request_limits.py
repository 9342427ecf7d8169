"""Bounds on every request (docs/access-control.md, "Abuse limits"): the query string's size
and number of parameters, and the time until the answer starts, both applied by the
services' edge middleware (``edge.ServiceEdge``).

Page sizes are bounded per route (``limit`` ≤ 1,000) and JSON nesting by the strict input
check; these are the bounds no route declares.
"""

from __future__ import annotations

from branchline_shared.http.problems import Problem


def query_refusal(query: bytes, *, max_bytes: int, max_params: int) -> Problem | None:
    """The 414 for a query string over the bounds, or None."""
    if len(query) > max_bytes:
        return _query_problem(f"longer than {max_bytes} bytes")
    if query and sum(1 for p in query.split(b"&") if p) > max_params:
        return _query_problem(f"more than {max_params} parameters")
    return None


def timeout_problem(timeout_s: float) -> Problem:
    """The 503 for a request whose answer did not start within ``timeout_s``."""
    return Problem(
        503,
        "Request timed out",
        f"no answer within {timeout_s:g} s; nothing was committed by this "
        "request unless a retry with the same event_id says so",
        kind="timeout",
        headers={"Retry-After": "1"},
    )


def _query_problem(what: str) -> Problem:
    return Problem(
        414,
        "Query too large",
        f"the query string is {what}",
        kind="query-too-large",
        errors=[{"field": "query", "message": what, "type": "too_long"}],
    )

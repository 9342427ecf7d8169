"""Bounds on every request (docs/access-control.md, "Abuse limits"), pure ASGI: the query
string's size and number of parameters, and the time until the answer starts.

Page sizes are bounded per route (``limit`` ≤ 1,000) and JSON nesting by the strict-input
middleware; these are the bounds no route declares.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchline_shared.http.asgi_answers import send_problem
from branchline_shared.http.problems import Problem


class RequestLimits:
    def __init__(
        self, app: ASGIApp, *, max_query_bytes: int, max_query_params: int, timeout_s: float
    ) -> None:
        self.app = app
        self.max_query_bytes = max_query_bytes
        self.max_query_params = max_query_params
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string") or b""
        if len(query) > self.max_query_bytes:
            await send_problem(send, _query_problem(f"longer than {self.max_query_bytes} bytes"))
            return
        params = [p for p in query.split(b"&") if p]
        if len(params) > self.max_query_params:
            await send_problem(
                send, _query_problem(f"more than {self.max_query_params} parameters")
            )
            return
        await self._within_time(scope, receive, send)

    async def _within_time(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The answer must start within the timeout; once it has (a long export streaming),
        it may take as long as it needs."""
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                await self.app(scope, receive, watched_send)
        except TimeoutError:
            if started:
                raise
            await send_problem(
                send,
                Problem(
                    503,
                    "Request timed out",
                    f"no answer within {self.timeout_s:g} s; nothing was committed by this "
                    "request unless a retry with the same event_id says so",
                    kind="timeout",
                    headers={"Retry-After": "1"},
                ),
            )


def _query_problem(what: str) -> Problem:
    return Problem(
        414,
        "Query too large",
        f"the query string is {what}",
        kind="query-too-large",
        errors=[{"field": "query", "message": what, "type": "too_long"}],
    )

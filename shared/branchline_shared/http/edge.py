"""The one middleware every Branchline HTTP service runs its requests through (#12).

It does, in this order, what used to be seven pure ASGI middlewares, each with its own frame
and its own wrapper around ``send`` (in intake's profile of single events, about a fifth of
the busy samples were those layers):

1. the rate limits (429; ``rate_limit.py``), when configured;
2. the query string's bounds (414; ``request_limits.py``);
3. from here on, the answer must start within the request timeout (503);
4. the body's size (413: a declared ``Content-Length`` at once, a chunked body as soon as it
   grows past the limit; whatever the route answered to the cut-off body is dropped);
5. the strict input check (422; ``strict_input.py``), which leaves a clean JSON body parsed
   in the scope;
6. the correlation id (``x-correlation-id``, taken from the request or made) in the logging
   context and on the answer, and the request's latency and count per route in the metrics:
   for requests that reach the app, as before;
7. on every answer, the security headers (``security_headers.py``), and for every request a
   line in the access log (``access_log.py``), when configured.

The answers it gives itself (1 to 5) carry the security headers and are logged, and carry no
correlation id and are not counted in the request metrics, exactly as when these were
separate layers (the correlation layer was the innermost). ``create_service_app`` installs it
with the body limit and the strict check; ``install_hardening`` adds the rest from settings
before the app starts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchline_shared.http.access_log import log_access
from branchline_shared.http.asgi_answers import send_problem
from branchline_shared.http.problems import Problem
from branchline_shared.http.rate_limit import RateLimiter
from branchline_shared.http.request_limits import query_refusal, timeout_problem
from branchline_shared.http.security_headers import Header, security_headers, with_security_headers
from branchline_shared.http.strict_input import refuse_input, strict_request
from branchline_shared.logging_setup import correlation_id_var

REQUESTS = Counter(
    "branchline_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "branchline_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_CORRELATION = b"x-correlation-id"
_CONTENT_LENGTH = b"content-length"


@dataclass
class Hardening:
    """The abuse limits ``install_hardening`` adds from settings (docs/access-control.md)."""

    max_query_bytes: int
    max_query_params: int
    timeout_s: float
    rate_limiter: RateLimiter | None = None
    access_log: bool = False


@dataclass
class EdgeOptions:
    service: str
    max_body_bytes: int
    hardening: Hardening | None = None


class ServiceEdge:
    def __init__(self, app: ASGIApp, options: EdgeOptions) -> None:
        self.app = app
        self.service = options.service
        self.max_body_bytes = options.max_body_bytes
        hardening = options.hardening
        self.hardened = hardening is not None
        self.max_query_bytes = hardening.max_query_bytes if hardening else 0
        self.max_query_params = hardening.max_query_params if hardening else 0
        self.timeout_s = hardening.timeout_s if hardening else None
        self.rate_limiter = hardening.rate_limiter if hardening else None
        self.access_log = bool(hardening and hardening.access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        extra: tuple[Header, ...] = security_headers(scope["path"]) if self.hardened else ()
        requested_cid: bytes | None = None
        declared: bytes | None = None
        for key, value in scope["headers"]:
            if key == _CORRELATION:
                if requested_cid is None:
                    requested_cid = value
            elif key == _CONTENT_LENGTH:
                declared = value
        status = 500  # what the server answers when the app raises before answering
        app_status = 500  # the app's, for the metrics (a dropped answer to a cut-off body too)
        answered = False
        too_large = False
        seen = 0
        cid_header: Header | None = None
        logged_cid = requested_cid  # the access log's: the answer's, else the request's
        app_began = 0.0
        deadline: asyncio.Timeout | None = None

        async def answer(message: Message) -> None:
            """An answer of this middleware's own."""
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                if deadline is not None and not deadline.expired():
                    deadline.reschedule(None)
                if extra:
                    message = {
                        **message,
                        "headers": with_security_headers(message["headers"], extra),
                    }
            await send(message)

        async def app_send(message: Message) -> None:
            """The app's answer: the one wrapper around ``send`` on the way out."""
            nonlocal status, app_status, answered, logged_cid
            if message["type"] == "http.response.start":
                app_status = message["status"]
                if too_large:
                    return  # the route's answer to a cut-off body: replaced by the 413
                status = app_status
                answered = True
                if deadline is not None:
                    deadline.reschedule(None)  # started in time: it may stream as long as it needs
                assert cid_header is not None  # set before the app is called
                logged_cid = cid_header[1]
                headers = [*message.get("headers", ()), cid_header]
                if extra:
                    headers = with_security_headers(headers, extra)
                message = {**message, "headers": headers}
            elif too_large:
                return
            await send(message)

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        try:
            refused = self._refusal(scope)
            if refused is not None:
                await send_problem(answer, refused)
                return
            try:
                async with asyncio.timeout(self.timeout_s) as deadline:
                    if (
                        declared is not None
                        and declared.isdigit()
                        and int(declared) > self.max_body_bytes
                    ):
                        await send_problem(answer, self._too_large())
                        return
                    try:
                        errors, app_receive = await strict_request(scope, limited_receive)
                        if errors:
                            await refuse_input(errors, answer)
                            return
                        cid = (
                            requested_cid.decode("latin-1") if requested_cid else str(uuid.uuid4())
                        )
                        cid_header = (_CORRELATION, cid.encode("latin-1"))
                        token = correlation_id_var.set(cid)
                        app_began = time.perf_counter()
                        try:
                            await self.app(scope, app_receive, app_send)
                        finally:
                            correlation_id_var.reset(token)
                    except _TooLarge:
                        pass
                    if too_large and not answered:
                        await send_problem(answer, self._too_large())
            except TimeoutError:
                if answered:
                    raise
                await send_problem(answer, timeout_problem(self.timeout_s or 0))
        finally:
            if cid_header is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                method = scope["method"]
                LATENCY.labels(self.service, method, route).observe(time.perf_counter() - app_began)
                REQUESTS.labels(self.service, method, route, str(app_status)).inc()
            if self.access_log:
                log_access(
                    self.service,
                    scope,
                    status,
                    began,
                    logged_cid.decode("latin-1") if logged_cid else None,
                )

    def _refusal(self, scope: Scope) -> Problem | None:
        if not self.hardened:
            return None
        if self.rate_limiter is not None:
            refused = self.rate_limiter.refusal(scope)
            if refused is not None:
                return refused
        query: bytes = scope.get("query_string") or b""
        return query_refusal(
            query, max_bytes=self.max_query_bytes, max_params=self.max_query_params
        )

    def _too_large(self) -> Problem:
        return Problem(
            413,
            "Payload too large",
            f"the body exceeds {self.max_body_bytes} bytes",
            kind="payload-too-large",
        )


class _TooLarge(Exception):
    pass

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

A service may answer a busy route itself (``service_app.serve_directly``): in step 6 the edge
then calls that handler instead of the app's own layers (exception middleware, routing,
FastAPI's request handling), handing it the app for any request it does not take.

The answers it gives itself (1 to 5) carry the security headers and are logged, and carry no
correlation id and are not counted in the request metrics, exactly as when these were
separate layers (the correlation layer was the innermost). ``create_service_app`` installs it
with the body limit and the strict check; ``install_hardening`` adds the rest from settings
before the app starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchline_shared.domain.ids import random_uuid
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


DirectRoute = Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]
"""A route a service answers itself, below the edge but past the app's own layers (#12): called
with the request and, last, the app, which it hands any request it does not take."""


@dataclass
class EdgeOptions:
    service: str
    max_body_bytes: int
    hardening: Hardening | None = None
    direct: dict[tuple[str, str], DirectRoute] = field(default_factory=dict)
    """Direct routes by (method, path): see :func:`service_app.serve_directly`."""


class ServiceEdge:
    """The edge itself: :meth:`__call__` runs a request through the steps below, in the order
    of the module docstring; what they share about the request is its :class:`_Exchange`."""

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
        self.direct = options.direct
        self._series: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, receive, send)
        try:
            refused = self._refusal(scope)  # 1, 2
            if refused is not None:
                await send_problem(exchange.send_own, refused)
            else:
                await self._within_deadline(exchange)  # 3 to 6
        finally:
            self._record(exchange)  # 6, 7

    def _refusal(self, scope: Scope) -> Problem | None:
        """Steps 1 and 2: the rate limits' 429, then the query string's 414, or None."""
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

    async def _within_deadline(self, exchange: _Exchange) -> None:
        """Step 3: the rest must start its answer within the request timeout, or the 503.
        Once an answer started, it may take as long as it needs (the senders lift the
        deadline); a timeout after that is not this step's to answer."""
        try:
            async with asyncio.timeout(self.timeout_s) as exchange.deadline:
                await self._bounded_body(exchange)
        except TimeoutError:
            if exchange.answered:
                raise
            await send_problem(exchange.send_own, timeout_problem(self.timeout_s or 0))

    async def _bounded_body(self, exchange: _Exchange) -> None:
        """Step 4: the 413 for a body over the limit, declared (before anything is read) or
        found while it is read (:meth:`_Exchange.receive_limited` stops the reading; the
        app's answer to the cut-off body, if any, is dropped by :meth:`_Exchange.send_app`)."""
        declared = exchange.declared_length
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_problem(exchange.send_own, self._too_large())
            return
        try:
            await self._checked_input(exchange)
        except _TooLarge:
            pass
        if exchange.too_large and not exchange.answered:
            await send_problem(exchange.send_own, self._too_large())

    async def _checked_input(self, exchange: _Exchange) -> None:
        """Step 5: the strict input check's 422, else the app, with the body the check read
        replayed (and, when clean, parsed in the scope)."""
        errors, app_receive = await strict_request(exchange.scope, exchange.receive_limited)
        if errors:
            await refuse_input(errors, exchange.send_own)
            return
        await self._correlated_app(exchange, app_receive)

    async def _correlated_app(self, exchange: _Exchange, receive: Receive) -> None:
        """Step 6, around the app: the correlation id in the logging context (reset after,
        so it never leaks to the next request) and, by :meth:`_Exchange.send_app`, on the
        answer; the time the app took starts here."""
        requested = exchange.requested_cid
        cid = requested.decode("latin-1") if requested else str(random_uuid())
        exchange.cid_header = (_CORRELATION, cid.encode("latin-1"))
        token = correlation_id_var.set(cid)
        exchange.app_began = time.perf_counter()
        try:
            scope = exchange.scope
            direct = self.direct.get((scope["method"], scope["path"])) if self.direct else None
            if direct is None or scope.get("root_path"):
                await self.app(scope, receive, exchange.send_app)
            else:
                await direct(scope, receive, exchange.send_app, self.app)
        finally:
            correlation_id_var.reset(token)

    def _record(self, exchange: _Exchange) -> None:
        """Steps 6 and 7, after the answer: the request metrics for a request that reached
        the app (the app's status, also when its answer was dropped for a cut-off body), and
        the access-log line for every request (the status the client got)."""
        scope = exchange.scope
        if exchange.cid_header is not None:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            latency, count = self._metrics(method, route, exchange.app_status)
            latency.observe(time.perf_counter() - exchange.app_began)
            count.inc()
        if self.access_log:
            logged = exchange.logged_cid
            log_access(
                self.service,
                scope,
                exchange.status,
                exchange.began,
                logged.decode("latin-1") if logged else None,
            )

    def _metrics(self, method: str, route: str, status: int) -> tuple[Histogram, Counter]:
        """The latency and count series of a route's answers, looked up once per (method,
        route, status) instead of by ``labels`` (checks, a lock) on every request (#12): the
        same series, which the metrics never remove."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = (
                LATENCY.labels(self.service, method, route),
                REQUESTS.labels(self.service, method, route, str(status)),
            )
            self._series[key] = series
        return series

    def _too_large(self) -> Problem:
        return Problem(
            413,
            "Payload too large",
            f"the body exceeds {self.max_body_bytes} bytes",
            kind="payload-too-large",
        )


class _Exchange:
    """One request on its way through the edge: what the steps learn and share, and the two
    ways out to the client (the edge's own answers, the app's) and the one way in (the body,
    counted against the limit). One object per request instead of closures over ``nonlocal``
    flags; ``__slots__`` keeps it as cheap to make and read."""

    __slots__ = (
        "answered",
        "app_began",
        "app_status",
        "began",
        "cid_header",
        "deadline",
        "declared_length",
        "extra",
        "logged_cid",
        "max_body_bytes",
        "receive",
        "requested_cid",
        "scope",
        "seen",
        "send",
        "status",
        "too_large",
    )

    def __init__(self, edge: ServiceEdge, scope: Scope, receive: Receive, send: Send) -> None:
        self.began = time.perf_counter()
        self.scope = scope
        self.receive = receive
        self.send = send
        self.max_body_bytes = edge.max_body_bytes
        # Step 7's headers, for every answer of this request.
        self.extra: tuple[Header, ...] = security_headers(scope["path"]) if edge.hardened else ()
        requested: bytes | None = None
        declared: bytes | None = None
        for key, value in scope["headers"]:
            if key == _CORRELATION:
                if requested is None:
                    requested = value  # the first, if sent twice
            elif key == _CONTENT_LENGTH:
                declared = value
        self.requested_cid = requested
        self.declared_length = declared
        self.status = 500  # what the server answers when the app raises before answering
        self.app_status = 500  # the app's, for the metrics (a dropped answer to a cut-off body too)
        self.answered = False
        self.too_large = False
        self.seen = 0
        self.cid_header: Header | None = None  # set when the app is called (step 6)
        self.logged_cid = requested  # the access log's: the answer's, else the request's
        self.app_began = 0.0
        self.deadline: asyncio.Timeout | None = None

    async def send_own(self, message: Message) -> None:
        """An answer of the edge's own (steps 1 to 5): the security headers, no correlation
        id; the deadline is lifted unless it is what this answers."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.answered = True
            deadline = self.deadline
            if deadline is not None and not deadline.expired():
                deadline.reschedule(None)
            if self.extra:
                message = {
                    **message,
                    "headers": with_security_headers(message["headers"], self.extra),
                }
        await self.send(message)

    async def send_app(self, message: Message) -> None:
        """The app's answer, the one wrapper around ``send`` on the way out: dropped if the
        body was cut off (step 4 answers instead), else with the correlation id and the
        security headers; started in time, it may stream as long as it needs."""
        if message["type"] == "http.response.start":
            self.app_status = message["status"]
            if self.too_large:
                return  # the route's answer to a cut-off body: replaced by the 413
            self.status = self.app_status
            self.answered = True
            if self.deadline is not None:
                self.deadline.reschedule(None)
            cid_header = self.cid_header
            assert cid_header is not None  # set before the app is called
            self.logged_cid = cid_header[1]
            headers = [*message.get("headers", ()), cid_header]
            if self.extra:
                headers = with_security_headers(headers, self.extra)
            message = {**message, "headers": headers}
        elif self.too_large:
            return
        await self.send(message)

    async def receive_limited(self) -> Message:
        """The body as the client sends it, counted: past the limit, the reading stops."""
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.max_body_bytes:
                self.too_large = True
                raise _TooLarge
        return message


class _TooLarge(Exception):
    pass

"""Per-token and per-address rate limits (docs/access-control.md, "Abuse limits"), pure ASGI.

Token buckets in the process: each bearer token (by a hash of its header, so the token is
never kept) and each client address may send ``burst`` requests at once and ``per_s`` a
second after that. A refused request never reaches the app, so nothing is stored for it; the
answer is 429 problem+json with ``Retry-After`` (whole seconds until a request would pass).
Operations endpoints (health, readiness, metrics) are not limited.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from branchline_shared.http.problems import Problem

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_KEYS = 50_000
"""Buckets kept at most (least recently used dropped): a flood of addresses costs bounded
memory; a dropped bucket starts full again, which only errs towards letting through."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    def __init__(self, per_s: float, burst: int, clock: Callable[[], float]) -> None:
        self.per_s = per_s
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def wait_for(self, key: str) -> float:
        """0 if a request under ``key`` may pass now (and count it), else seconds to wait."""
        now = self.clock()
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.per_s)
        bucket.at = now
        self._buckets[key] = bucket
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.per_s


class RateLimiter:
    """The two kinds of bucket, asked once per request by the services' edge middleware
    (``edge.ServiceEdge``) before the request goes any further."""

    def __init__(
        self,
        *,
        token_per_s: float,
        token_burst: int,
        address_per_s: float,
        address_burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = TokenBuckets(token_per_s, token_burst, clock)
        self.addresses = TokenBuckets(address_per_s, address_burst, clock)

    def refusal(self, scope: Scope) -> Problem | None:
        """The 429 for this request, or None if it may pass (and is counted)."""
        if scope.get("path") in UNLIMITED_PATHS:
            return None
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = self.addresses.wait_for(address)
        authorization = _authorization(scope)
        if not wait and authorization:
            wait = self.tokens.wait_for(hashlib.sha256(authorization).hexdigest()[:32])
        if not wait:
            return None
        retry = max(1, math.ceil(wait))
        return Problem(
            429,
            "Too many requests",
            f"rate limit reached; retry in {retry} s",
            kind="rate-limited",
            headers={"Retry-After": str(retry)},
        )


def _authorization(scope: Scope) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            return bytes(value)
    return None

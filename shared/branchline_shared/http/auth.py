"""Bearer JWT authentication and role checks (docs/access-control.md).

Roles: branch_system, rm, supervisor, auditor, admin. A token must carry ``sub`` (a bounded
staff or system id), ``roles``, ``iss``, ``aud`` (this service's audience among them), ``iat``
and ``exp``, a ``kid`` header naming one of the configured verification keys, and a lifetime
no longer than the configured maximum; a branch system's token names its ``branch_id``.
Every failure is a 401 problem+json: which check failed is said, the token never echoed.

A token verified once is remembered (``VerifiedTokens``, #12): verifying the signature and
claims was a fifth of intake's busy time per request, and a caller sends the same token for
hours. Only what passed every check is remembered, never past the token's ``exp`` and never
longer than a bounded time after it was verified.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from starlette.types import Scope

from branchline_shared.http.problems import Problem


class Role(StrEnum):
    BRANCH_SYSTEM = "branch_system"
    RM = "rm"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


ALGORITHMS = ("HS256", "EdDSA", "RS256")
"""Signature algorithms a deployment may choose (one at a time); ``none`` never."""

SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9._:@\-]{1,128}")
"""A subject is a staff or system id: printable, no whitespace or controls, bounded."""
MAX_TOKEN_CHARS = 8192
"""Longer than any token Branchline issues: a bigger header is refused before decoding."""
CLOCK_LEEWAY = timedelta(seconds=30)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token says (and nothing the body says)."""

    subject: str
    roles: frozenset[Role]
    branch_id: str | None = None
    token_fingerprint: str = ""
    """SHA-256 of the token (hex, truncated): rate limits count per token without keeping it."""

    def has_any(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)

    def has(self, role: Role) -> bool:
        return role in self.roles

    def submitter(self) -> dict[str, Any]:
        """The ``submitted_by`` of events this principal sends (ADR-0011)."""
        value: dict[str, Any] = {"sub": self.subject, "roles": sorted(r.value for r in self.roles)}
        if self.branch_id is not None:
            value["branch_id"] = self.branch_id
        return value


@dataclass(frozen=True)
class TokenKeys:
    """The keys of one deployment: one signing key (where tokens are issued) and every key
    a token may still be verified with, by ``kid`` (rotation: add the new key, sign with it,
    drop the old one once its tokens have expired)."""

    algorithm: str
    verification: Mapping[str, Any]
    """kid -> HMAC secret (HS256) or public key (EdDSA, RS256)."""
    signing_kid: str | None = None
    signing_key: Any = None
    """HMAC secret or private key; None where this process only verifies."""

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported token algorithm {self.algorithm!r}")
        if not self.verification:
            raise ValueError("at least one token verification key is needed")


class VerifiedTokens:
    """The principals of tokens that passed every check, by the SHA-256 of the token (#12).

    Bounded in count (least recently used dropped first) and in time: an entry is used only
    while ``now`` is before the token's ``exp`` (no leeway: the full check, with its 30 s of
    leeway, decides past that) and less than ``max_age`` after it was verified. The cache
    belongs to one ``TokenCodec``, whose keys are read when the process starts: a removed key
    stops verifying at the restart, which also empties the cache. ``max_age`` bounds how old
    a remembered verdict can be, and so how long a removed key's token would still be taken
    should keys ever change within a running process (docs/access-control.md).
    A token that fails any check never gets here: only ``TokenCodec.verify`` adds, after
    the checks. The token itself is not kept, only its digest and the principal.
    """

    def __init__(self, max_entries: int, max_age: timedelta) -> None:
        if max_entries < 1 or max_age <= timedelta(0):
            raise ValueError("a token cache holds at least one entry for a positive time")
        self.max_entries = max_entries
        self.max_age_s = max_age.total_seconds()
        self._entries: OrderedDict[bytes, tuple[Principal, float, float]] = OrderedDict()
        # Console pages verify in worker threads; an OrderedDict is not safe to reorder
        # from two threads at once.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, now: float) -> Principal | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            principal, verified_at, until = entry
            # A clock that went back would otherwise stretch the max_age bound.
            if not verified_at <= now < until:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return principal

    def put(self, digest: bytes, principal: Principal, *, exp: float, now: float) -> None:
        until = min(exp, now + self.max_age_s)
        if until <= now:
            return  # accepted within the leeway past exp: checked in full every time
        with self._lock:
            self._entries[digest] = (principal, now, until)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class TokenCodec:
    keys: TokenKeys
    issuer: str
    audience: str
    """What this service accepts: a token must name it in ``aud``."""
    max_lifetime: timedelta = timedelta(hours=12)
    leeway: timedelta = field(default=CLOCK_LEEWAY)
    verified: VerifiedTokens | None = field(default=None, compare=False, repr=False)
    """Tokens already verified (#12); None: every token is checked in full every time."""
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    """Seconds since the epoch: the time of the cache and of the codec's own expiry check."""

    @classmethod
    def hs256(
        cls,
        secret: str,
        *,
        issuer: str,
        audience: str,
        kid: str = "k1",
        max_lifetime: timedelta = timedelta(hours=12),
    ) -> TokenCodec:
        return cls(TokenKeys("HS256", {kid: secret}, kid, secret), issuer, audience, max_lifetime)

    def issue(
        self,
        subject: str,
        roles: Sequence[Role],
        *,
        ttl: timedelta,
        now: datetime,
        branch_id: str | None = None,
        audiences: Sequence[str] | None = None,
    ) -> str:
        if self.keys.signing_key is None or self.keys.signing_kid is None:
            raise ValueError("this process has no token signing key")
        if ttl <= timedelta(0) or ttl > self.max_lifetime:
            raise ValueError(f"a token lives more than 0 and at most {self.max_lifetime}")
        if not SUBJECT_PATTERN.fullmatch(subject):
            raise ValueError("the subject must be 1-128 characters of [A-Za-z0-9._:@-]")
        if not roles:
            raise ValueError("a token needs at least one role")
        claims: dict[str, Any] = {
            "sub": subject,
            "roles": sorted({Role(r).value for r in roles}),
            "iss": self.issuer,
            "aud": list(audiences) if audiences else [self.audience],
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        if branch_id is not None:
            if not SUBJECT_PATTERN.fullmatch(branch_id):
                raise ValueError("the branch id must be 1-128 characters of [A-Za-z0-9._:@-]")
            claims["branch_id"] = branch_id
        return jwt.encode(
            claims,
            self.keys.signing_key,
            algorithm=self.keys.algorithm,
            headers={"kid": self.keys.signing_kid},
        )

    def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthorized(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        # The exact token, digested: the cache key and the principal's fingerprint.
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self.clock()
        if self.verified is not None:
            known = self.verified.get(digest, now)
            if known is not None:
                return known
        claims = self._checked_claims(token)
        principal = self._principal(digest, claims)
        # PyJWT checked the times against its own clock; the expiry is checked again against
        # this codec's, the one the cache uses, so both always agree on what has expired.
        if claims["exp"] <= now - self.leeway.total_seconds():
            raise unauthorized("the token has expired")
        if self.verified is not None:
            self.verified.put(digest, principal, exp=claims["exp"], now=now)
        return principal

    def _checked_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token whose header, signature, issuer, audience and times pass."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthorized("the token is not a JWT") from None
        alg = header.get("alg")
        if alg != self.keys.algorithm:
            raise unauthorized(f"the token's algorithm must be {self.keys.algorithm}")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self.keys.verification:
            raise unauthorized("the token's key id (kid) is missing or unknown")
        try:
            claims = jwt.decode(
                token,
                self.keys.verification[kid],
                algorithms=[self.keys.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud"],
                    "verify_iat": True,
                    "verify_nbf": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("the token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"the token lacks the claim {exc.claim!r}") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f"the token is not meant for {self.audience!r} (aud)") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("the token's issuer (iss) is not trusted") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("the token's signature does not verify") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise unauthorized("the token is malformed") from None
        return claims

    def _principal(self, digest: bytes, claims: Mapping[str, Any]) -> Principal:
        iat, exp = claims["iat"], claims["exp"]
        if not _is_number(iat) or not _is_number(exp):
            raise unauthorized("iat and exp must be numbers")
        if exp - iat > self.max_lifetime.total_seconds():
            raise unauthorized(
                f"the token lives longer than the maximum of {self.max_lifetime} (exp - iat)"
            )
        subject = claims["sub"]
        if not isinstance(subject, str) or not SUBJECT_PATTERN.fullmatch(subject):
            raise unauthorized("sub must be 1-128 characters of [A-Za-z0-9._:@-]")
        raw_roles = claims.get("roles")
        if not isinstance(raw_roles, list) or not raw_roles:
            raise unauthorized("the token names no role (roles)")
        try:
            roles = frozenset(Role(r) for r in raw_roles)
        except ValueError:
            raise unauthorized("the token names an unknown role") from None
        branch_id = claims.get("branch_id")
        if branch_id is not None and (
            not isinstance(branch_id, str) or not SUBJECT_PATTERN.fullmatch(branch_id)
        ):
            raise unauthorized("branch_id must be 1-128 characters of [A-Za-z0-9._:@-]")
        return Principal(subject, roles, branch_id, digest.hex()[:32])


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def unauthorized(detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail, kind="unauthorized", headers={"WWW-Authenticate": "Bearer"}
    )


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or a 401."""
    if len(header) > MAX_TOKEN_CHARS + 16:
        raise unauthorized("the Authorization header is too long")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise unauthorized("missing bearer token (Authorization: Bearer <JWT>)")
    return token


async def current_principal(request: Request) -> Principal:
    # Starlette keeps request.state in the scope's "state": one cache for both ways in.
    return scope_principal(request.scope, request.app.state.token_codec)


def scope_principal(scope: Scope, codec: TokenCodec) -> Principal:
    """The caller of the request in ``scope`` (401 without a valid bearer token), read from
    the ASGI scope itself so that a handler that builds no ``Request`` can ask too (#12): the
    first ``Authorization`` header; the principal is kept in the request's state (the access
    log reads it there, and a second ask does not verify the token again)."""
    state = scope.setdefault("state", {})
    cached = state.get("principal")
    if isinstance(cached, Principal):
        return cached
    header = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    principal = codec.verify(bearer_token(header))
    state["principal"] = principal
    return principal


def role_refusal(principal: Principal, wanted: frozenset[Role]) -> Problem | None:
    """The 403 of :func:`require_roles` when ``principal`` has none of ``wanted``."""
    if principal.has_any(wanted):
        return None
    return forbidden(f"this needs one of the roles {sorted(r.value for r in wanted)}")


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def forbidden(detail: str, *, kind: str = "forbidden") -> Problem:
    return Problem(403, "Forbidden", detail, kind=kind)


def require_roles(*roles: Role) -> Any:
    wanted = frozenset(roles)

    # The principal is read here rather than declared as a dependency of this one (#12):
    # each level of FastAPI dependencies costs its own resolution per request (cache keys,
    # scope checks, four parameter passes), about as much as the check itself. Same order:
    # no or a bad token is 401 before any 403.
    async def check(request: Request) -> Principal:
        principal = await current_principal(request)
        refused = role_refusal(principal, wanted)
        if refused is not None:
            raise refused
        return principal

    return Depends(check)


def utcnow() -> datetime:
    return datetime.now(UTC)

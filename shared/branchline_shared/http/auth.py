"""Bearer JWT authentication (HS256) and role checks.

Roles: branch_system, rm, supervisor, auditor, admin (API.md). Tokens carry ``sub`` and
``roles``; ``exp`` is required.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from branchline_shared.http.problems import Problem


class Role(StrEnum):
    BRANCH_SYSTEM = "branch_system"
    RM = "rm"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[Role]

    def has_any(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)


@dataclass(frozen=True)
class TokenCodec:
    secret: str
    issuer: str
    audience: str

    def issue(self, subject: str, roles: list[Role], *, ttl: timedelta, now: datetime) -> str:
        claims = {
            "sub": subject,
            "roles": [r.value for r in roles],
            "iss": self.issuer,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        try:
            roles = frozenset(Role(r) for r in claims.get("roles", []))
        except ValueError:
            raise _unauthorized("the token names an unknown role") from None
        return Principal(subject=str(claims["sub"]), roles=roles)


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail, kind="unauthorized", headers={"WWW-Authenticate": "Bearer"}
    )


async def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token (Authorization: Bearer <JWT>)")
    codec: TokenCodec = request.app.state.token_codec
    principal = codec.verify(token.strip())
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role) -> Any:
    wanted = frozenset(roles)

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.has_any(wanted):
            raise Problem(
                403,
                "Forbidden",
                f"this needs one of the roles {sorted(r.value for r in wanted)}",
                kind="forbidden",
            )
        return principal

    return Depends(check)


def utcnow() -> datetime:
    return datetime.now(UTC)

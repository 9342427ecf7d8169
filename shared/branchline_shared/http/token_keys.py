"""The token keys and codecs of a deployment, built from settings (docs/access-control.md).

HS256 signs and verifies with shared secrets (the embedded stack's default). EdDSA (Ed25519)
and RS256 verify with public keys only, so a service that is broken into cannot mint tokens;
the private key lives where tokens are issued (an identity provider, or ``branchline token``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from branchline_shared.http.auth import Role, TokenCodec, TokenKeys, VerifiedTokens
from branchline_shared.settings import CommonSettings, MissingSecretError

SERVICES = ("intake", "followup", "audit")

ROLE_SERVICES: dict[Role, tuple[str, ...]] = {
    Role.BRANCH_SYSTEM: ("intake",),
    Role.RM: ("intake", "followup"),
    Role.SUPERVISOR: ("intake", "followup"),
    Role.AUDITOR: ("audit", "followup"),  # followup: the complaint statistics
    Role.ADMIN: SERVICES,
}
"""The services a role works with: the default audiences of a token issued for it."""


def service_audience(settings: CommonSettings, service: str) -> str:
    """Each service accepts only tokens naming it, so a token captured at one service (a
    console behind a proxy, a log line) cannot be replayed at another it was not issued for."""
    return f"{settings.jwt_audience}:{service}"


def audiences_for(settings: CommonSettings, roles: list[Role]) -> list[str]:
    services = sorted({s for r in roles for s in ROLE_SERVICES[r]})
    return [service_audience(settings, s) for s in services]


def token_keys(settings: CommonSettings) -> TokenKeys:
    """The deployment's keys (development: those the dev stack generated into the data folder)."""
    kid = settings.jwt_key_id
    extra = {k: v.get_secret_value() for k, v in settings.jwt_verification_keys.items()}
    if settings.jwt_algorithm == "HS256":
        secret = settings.resolved_jwt_secret()
        return TokenKeys("HS256", {**extra, kid: secret}, kid, secret)
    public: dict[str, Any] = {
        k: serialization.load_pem_public_key(v.encode()) for k, v in extra.items()
    }
    private = _private_key(settings)
    if private is not None:
        public[kid] = private.public_key()
    return TokenKeys(
        settings.jwt_algorithm,
        public,
        kid if private is not None else None,
        private,
    )


def token_codec(settings: CommonSettings, service: str) -> TokenCodec:
    """What ``service`` verifies tokens with (and, where the signing key is here, issues)."""
    size, seconds = settings.jwt_verified_cache_size, settings.jwt_verified_cache_seconds
    return TokenCodec(
        token_keys(settings),
        settings.jwt_issuer,
        service_audience(settings, service),
        timedelta(hours=settings.jwt_max_lifetime_hours),
        verified=(
            VerifiedTokens(size, timedelta(seconds=seconds)) if size > 0 and seconds > 0 else None
        ),
    )


def _private_key(settings: CommonSettings) -> Any:
    """The EdDSA/RS256 signing key, where tokens are issued here; ``None`` where only
    verification keys are configured (production services)."""
    path = settings.jwt_private_key_path
    if not path.exists():
        if settings.environment == "production" and settings.jwt_private_key_file is None:
            return None
        raise MissingSecretError(
            f"the token signing key {path} does not exist: set "
            "BRANCHLINE_JWT_PRIVATE_KEY_FILE, or start the embedded stack (`branchline dev`), "
            "which generates the development secrets"
        )
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    wanted = ed25519.Ed25519PrivateKey if settings.jwt_algorithm == "EdDSA" else rsa.RSAPrivateKey
    if not isinstance(key, wanted):
        raise ValueError(f"the token signing key is not a {settings.jwt_algorithm} key")
    return key


def signing_key_pem(algorithm: str) -> bytes:
    """A new private signing key for ``algorithm`` (EdDSA or RS256), PEM (the dev stack's)."""
    key: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=3072)
    )
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

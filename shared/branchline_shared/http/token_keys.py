"""The token keys and codecs of a deployment, built from settings (docs/access-control.md).

HS256 signs and verifies with shared secrets (the embedded stack's default). EdDSA (Ed25519)
and RS256 verify with public keys only, so a service that is broken into cannot mint tokens;
the private key lives where tokens are issued (an identity provider, or ``branchline token``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from branchline_shared.http.auth import Role, TokenCodec, TokenKeys
from branchline_shared.settings import BranchlineSettings

SERVICES = ("intake", "followup", "audit")

ROLE_SERVICES: dict[Role, tuple[str, ...]] = {
    Role.BRANCH_SYSTEM: ("intake",),
    Role.RM: ("intake", "followup"),
    Role.SUPERVISOR: ("intake", "followup"),
    Role.AUDITOR: ("audit", "followup"),  # followup: the complaint statistics
    Role.ADMIN: SERVICES,
}
"""The services a role works with: the default audiences of a token issued for it."""


def service_audience(settings: BranchlineSettings, service: str) -> str:
    """Each service accepts only tokens naming it, so a token captured at one service (a
    console behind a proxy, a log line) cannot be replayed at another it was not issued for."""
    return f"{settings.jwt_audience}:{service}"


def audiences_for(settings: BranchlineSettings, roles: list[Role]) -> list[str]:
    services = sorted({s for r in roles for s in ROLE_SERVICES[r]})
    return [service_audience(settings, s) for s in services]


def token_keys(settings: BranchlineSettings) -> TokenKeys:
    """The deployment's keys (development: the signing key is created on first use)."""
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


def token_codec(settings: BranchlineSettings, service: str) -> TokenCodec:
    """What ``service`` verifies tokens with (and, where the signing key is here, issues)."""
    return TokenCodec(
        token_keys(settings),
        settings.jwt_issuer,
        service_audience(settings, service),
        timedelta(hours=settings.jwt_max_lifetime_hours),
    )


def _private_key(settings: BranchlineSettings) -> Any:
    path = settings.jwt_private_key_file
    if path is None:
        path = settings.data_dir / "secrets" / f"jwt-signing-key-{settings.jwt_algorithm}.pem"
        if not path.exists():
            if settings.environment == "production":
                return None
            _generate(path, settings.jwt_algorithm)
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    wanted = ed25519.Ed25519PrivateKey if settings.jwt_algorithm == "EdDSA" else rsa.RSAPrivateKey
    if not isinstance(key, wanted):
        raise ValueError(f"the token signing key is not a {settings.jwt_algorithm} key")
    return key


def _generate(path: Path, algorithm: str) -> None:
    key: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=3072)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(pem)
    path.chmod(0o600)

"""Token verification (docs/access-control.md, "Tokens"): every refusal is a 401 problem."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from branchline_cli.dev_secrets import provision_dev_secrets
from branchline_shared.http.auth import Role, TokenCodec, TokenKeys, bearer_token, utcnow
from branchline_shared.http.problems import Problem
from branchline_shared.http.token_keys import audiences_for, token_codec
from branchline_shared.settings import BranchlineSettings

pytestmark = pytest.mark.unit

SECRET = "s" * 48
AUD = "branchline:intake"


def codec(**overrides: Any) -> TokenCodec:
    values: dict[str, Any] = {"issuer": "branchline", "audience": AUD}
    values.update(overrides)
    return TokenCodec.hs256(SECRET, **values)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(utcnow().timestamp())
    base: dict[str, Any] = {
        "sub": "rm-7",
        "roles": ["rm"],
        "iss": "branchline",
        "aud": [AUD],
        "iat": now,
        "exp": now + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def signed(body: dict[str, Any], *, key: str = SECRET, kid: str | None = "k1") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(body, key, algorithm="HS256", headers=headers)


def refused(token: str, verifier: TokenCodec | None = None) -> str:
    with pytest.raises(Problem) as caught:
        (verifier or codec()).verify(token)
    problem = caught.value
    assert problem.status == 401
    assert problem.body()["type"].endswith("unauthorized")
    assert problem.headers == {"WWW-Authenticate": "Bearer"}
    assert token not in problem.detail  # never echoed
    return problem.detail


def test_a_good_token_gives_its_subject_roles_and_branch() -> None:
    principal = codec().verify(signed(claims(roles=["branch_system"], branch_id="BR-1")))
    assert principal.subject == "rm-7"
    assert principal.roles == frozenset({Role.BRANCH_SYSTEM})
    assert principal.branch_id == "BR-1"
    assert len(principal.token_fingerprint) == 32


def test_issue_then_verify_round_trips() -> None:
    c = codec()
    token = c.issue("sup-1", [Role.SUPERVISOR], ttl=timedelta(hours=1), now=utcnow())
    assert c.verify(token).subject == "sup-1"
    assert jwt.get_unverified_header(token)["kid"] == "k1"


def test_wrong_signature() -> None:
    assert "signature" in refused(signed(claims(), key="another-secret-" + "y" * 40))


def test_alg_none() -> None:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    unsigned = f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{part(claims())}."
    assert "algorithm" in refused(unsigned)


def test_expired() -> None:
    now = int(utcnow().timestamp())
    assert "expired" in refused(signed(claims(iat=now - 7200, exp=now - 3600)))


def test_not_yet_valid() -> None:
    now = int(utcnow().timestamp())
    assert "not valid yet" in refused(signed(claims(iat=now + 600, exp=now + 3600)))
    assert "not valid yet" in refused(signed(claims(nbf=now + 600)))


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud"])
def test_missing_claim(claim: str) -> None:
    assert claim in refused(signed(claims(**{claim: _DROP})))


@pytest.mark.parametrize(
    "value", ["", " ", "rm 7", "rm-7\n", "rm\x00", "x" * 129, 7, None, ["rm-7"]]
)
def test_empty_or_malformed_subject(value: Any) -> None:
    refused(signed(claims(sub=value)))


@pytest.mark.parametrize("roles", [_DROP, [], ["root"], "rm", None])
def test_missing_empty_or_unknown_roles(roles: Any) -> None:
    refused(signed(claims(roles=roles)))


def test_bad_branch_claim() -> None:
    refused(signed(claims(roles=["branch_system"], branch_id="BR 1")))


def test_too_long_a_lifetime() -> None:
    now = int(utcnow().timestamp())
    assert "longer than the maximum" in refused(signed(claims(iat=now, exp=now + 13 * 3600)))
    assert "longer" in refused(signed(claims(exp=253402300799)))  # year 9999
    with pytest.raises(ValueError, match="at most"):
        codec().issue("rm-7", [Role.RM], ttl=timedelta(hours=13), now=utcnow())


def test_wrong_issuer_and_another_services_audience() -> None:
    assert "issuer" in refused(signed(claims(iss="someone-else")))
    assert "not meant for" in refused(signed(claims(aud=["branchline:audit"])))


def test_unknown_or_missing_kid() -> None:
    assert "kid" in refused(signed(claims(), kid="k9"))
    assert "kid" in refused(signed(claims(), kid=None))


def test_rotated_key_verifies_while_listed_then_not() -> None:
    old, new = "old-secret-" + "o" * 40, "new-secret-" + "n" * 40
    rotating = TokenCodec(TokenKeys("HS256", {"k1": old, "k2": new}, "k2", new), "branchline", AUD)
    issued_before = signed(claims(), key=old, kid="k1")
    assert rotating.verify(issued_before).subject == "rm-7"
    fresh = rotating.issue("rm-7", [Role.RM], ttl=timedelta(hours=1), now=utcnow())
    assert jwt.get_unverified_header(fresh)["kid"] == "k2"
    retired = TokenCodec(TokenKeys("HS256", {"k2": new}, "k2", new), "branchline", AUD)
    assert retired.verify(fresh).subject == "rm-7"
    assert "kid" in refused(issued_before, retired)
    # a key listed under one kid does not verify a token naming another
    assert "signature" in refused(signed(claims(), key=old, kid="k2"), rotating)


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_asymmetric_keys_verify_with_the_public_key_only(algorithm: str) -> None:
    private: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    issuer = TokenCodec(
        TokenKeys(algorithm, {"a1": private.public_key()}, "a1", private), "branchline", AUD
    )
    verifier = TokenCodec(TokenKeys(algorithm, {"a1": private.public_key()}), "branchline", AUD)
    token = issuer.issue("aud-1", [Role.AUDITOR], ttl=timedelta(hours=1), now=utcnow())
    assert verifier.verify(token).roles == frozenset({Role.AUDITOR})
    with pytest.raises(ValueError, match="signing key"):
        verifier.issue("x", [Role.RM], ttl=timedelta(hours=1), now=utcnow())
    # algorithm confusion: an HS256 token "signed" with the public key's PEM is refused
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = jwt.encode(claims(), "x" * 64, algorithm="HS256", headers={"kid": "a1"})
    assert "algorithm" in refused(forged, verifier)
    assert pem  # the PEM form is what deployments configure


def test_settings_build_asymmetric_codecs_and_rotation(tmp_path: Path) -> None:
    settings = BranchlineSettings(data_dir=tmp_path, jwt_algorithm="EdDSA", jwt_key_id="e1")
    provision_dev_secrets(settings)
    c = token_codec(settings, "followup")
    token = c.issue(
        "rm-7",
        [Role.RM],
        ttl=timedelta(hours=1),
        now=utcnow(),
        audiences=audiences_for(settings, [Role.RM]),
    )
    assert token_codec(settings, "followup").verify(token).subject == "rm-7"
    assert token_codec(settings, "intake").verify(token).subject == "rm-7"
    assert "not meant for" in refused(token, token_codec(settings, "audit"))
    pem = c.keys.verification["e1"].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifying_only = BranchlineSettings(
        data_dir=tmp_path / "elsewhere",
        environment="production",
        jwt_algorithm="EdDSA",
        jwt_verification_keys={"e1": pem.decode()},
        master_key=base64.b64encode(b"k" * 32).decode(),
    )
    assert token_codec(verifying_only, "intake").verify(token).subject == "rm-7"
    assert token_codec(verifying_only, "intake").keys.signing_key is None


def test_production_needs_keys_for_asymmetric_algorithms(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="VERIFICATION_KEYS"):
        BranchlineSettings(
            data_dir=tmp_path,
            environment="production",
            jwt_algorithm="RS256",
            master_key=base64.b64encode(b"k" * 32).decode(),
        )


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic abc", "bearer a b", "Token x", "Bearer " + "x" * 9000],
)
def test_empty_or_malformed_authorization_header(header: str) -> None:
    with pytest.raises(Problem) as caught:
        bearer_token(header)
    assert caught.value.status == 401


@pytest.mark.parametrize("token", ["x", "a.b", "a.b.c", "....", "x" * 9000, "é.é.é"])
def test_garbage_tokens(token: str) -> None:
    refused(token)

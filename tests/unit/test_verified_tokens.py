"""The cache of verified tokens (#12, docs/access-control.md "Tokens"): a token verified once is
taken again without verifying it, only until its ``exp`` and at most ``max_age`` after it was
verified; what fails a check is never remembered. Time comes from an injected clock."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from branchline_shared.http import auth
from branchline_shared.http.auth import Role, TokenCodec, TokenKeys, VerifiedTokens, utcnow
from branchline_shared.http.problems import Problem, install_problem_handlers
from branchline_shared.http.token_keys import token_codec
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

SECRET = "s" * 48
AUD = "branchline:intake"


class Clock:
    """Seconds since the epoch, moved by the test (it starts at the real time: PyJWT checks
    the times against its own clock, so the tokens must be valid for it too)."""

    def __init__(self) -> None:
        self.now = float(int(utcnow().timestamp()))

    def __call__(self) -> float:
        return self.now


class CountingDecode:
    """Counts PyJWT's full verifications (the work the cache saves)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._decode = jwt.decode
        monkeypatch.setattr(auth.jwt, "decode", self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._decode(*args, **kwargs)


def cached_codec(
    clock: Clock,
    *,
    max_entries: int = 16,
    max_age: timedelta = timedelta(seconds=60),
    verification: dict[str, str] | None = None,
) -> TokenCodec:
    keys = TokenKeys("HS256", verification or {"k1": SECRET}, "k1", SECRET)
    return TokenCodec(
        keys, "branchline", AUD, verified=VerifiedTokens(max_entries, max_age), clock=clock
    )


def token(clock: Clock, sub: str = "rm-7", *, ttl_s: int = 3600, key: str = SECRET) -> str:
    now = int(clock.now)
    body = {
        "sub": sub,
        "roles": ["rm"],
        "iss": "branchline",
        "aud": [AUD],
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(body, key, algorithm="HS256", headers={"kid": "k1"})


def cache_of(codec: TokenCodec) -> VerifiedTokens:
    assert codec.verified is not None
    return codec.verified


def refused(codec: TokenCodec, value: str) -> str:
    with pytest.raises(Problem) as caught:
        codec.verify(value)
    assert caught.value.status == 401
    return caught.value.detail


def test_a_cached_token_gives_the_same_principal_without_verifying_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    codec = cached_codec(clock)
    decode = CountingDecode(monkeypatch)
    value = token(clock)
    first = codec.verify(value)
    clock.now += 30
    second = codec.verify(value)
    assert second is first
    assert decode.calls == 1
    assert first.subject == "rm-7"
    assert first.roles == frozenset({Role.RM})
    # the fingerprint is what it was before the cache (rate limits count by it)
    assert first.token_fingerprint == hashlib.sha256(value.encode()).hexdigest()[:32]


def test_an_expired_token_is_refused_even_when_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    codec = cached_codec(clock, max_age=timedelta(hours=1))
    decode = CountingDecode(monkeypatch)
    value = token(clock, ttl_s=120)
    exp = clock.now + 120
    codec.verify(value)
    assert len(cache_of(codec)) == 1
    # Past exp the cache is never used: within the 30 s leeway the full check still accepts
    # (as without a cache), and does not remember a token that has expired.
    clock.now = exp + 5
    assert codec.verify(value).subject == "rm-7"
    assert decode.calls == 2
    assert len(cache_of(codec)) == 0
    clock.now = exp + 31
    assert "expired" in refused(codec, value)


def test_a_token_whose_signature_fails_is_never_cached() -> None:
    clock = Clock()
    codec = cached_codec(clock)
    forged = token(clock, key="another-secret-" + "y" * 40)
    assert "signature" in refused(codec, forged)
    assert "signature" in refused(codec, forged)
    assert len(cache_of(codec)) == 0
    # a good token cached does not vouch for the same claims with another signature
    good = token(clock)
    codec.verify(good)
    header, body, signature = good.split(".")
    tampered = f"{header}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    assert "signature" in refused(codec, tampered)
    assert len(cache_of(codec)) == 1


def test_other_refusals_are_not_cached_either() -> None:
    clock = Clock()
    codec = cached_codec(clock)
    too_long_lived = token(clock, ttl_s=13 * 3600)
    assert "longer than the maximum" in refused(codec, too_long_lived)
    assert "longer than the maximum" in refused(codec, too_long_lived)
    assert len(cache_of(codec)) == 0


def test_the_cache_holds_at_most_its_size_dropping_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    codec = cached_codec(clock, max_entries=3)
    decode = CountingDecode(monkeypatch)
    tokens = [token(clock, f"rm-{i}") for i in range(5)]
    codec.verify(tokens[0])
    codec.verify(tokens[1])
    codec.verify(tokens[2])
    codec.verify(tokens[0])  # used again: now the most recent
    codec.verify(tokens[3])  # drops tokens[1], the least recently used
    codec.verify(tokens[4])  # drops tokens[2]
    assert len(cache_of(codec)) == 3
    assert decode.calls == 5
    codec.verify(tokens[0])
    codec.verify(tokens[4])
    assert decode.calls == 5  # both still cached
    codec.verify(tokens[1])
    assert decode.calls == 6  # dropped: verified in full again
    assert len(cache_of(codec)) == 3


def test_a_removed_key_stops_verifying_within_the_cache_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    keys = {"k1": SECRET}
    codec = cached_codec(clock, max_age=timedelta(seconds=60), verification=keys)
    decode = CountingDecode(monkeypatch)
    value = token(clock)
    codec.verify(value)
    del keys["k1"]  # the key is withdrawn
    clock.now += 59
    assert codec.verify(value).subject == "rm-7"  # still within the cache time
    assert decode.calls == 1
    clock.now += 1
    assert "kid" in refused(codec, value)


def test_a_clock_that_went_back_does_not_stretch_an_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    codec = cached_codec(clock)
    decode = CountingDecode(monkeypatch)
    value = token(clock)
    codec.verify(value)
    clock.now -= 10
    codec.verify(value)
    assert decode.calls == 2


def test_an_entry_lives_until_the_earlier_of_exp_and_max_age() -> None:
    principal = auth.Principal("rm-7", frozenset({Role.RM}))
    cache = VerifiedTokens(4, timedelta(seconds=60))
    cache.put(b"a", principal, exp=1030.0, now=1000.0)
    cache.put(b"b", principal, exp=5000.0, now=1000.0)
    cache.put(b"c", principal, exp=1000.0, now=1000.0)  # already at exp: not kept
    assert len(cache) == 2
    assert cache.get(b"a", 1029.9) is principal
    assert cache.get(b"a", 1030.0) is None
    assert cache.get(b"b", 1059.9) is principal
    assert cache.get(b"b", 1060.0) is None
    assert len(cache) == 0
    with pytest.raises(ValueError, match="at least one entry"):
        VerifiedTokens(0, timedelta(seconds=60))
    with pytest.raises(ValueError, match="positive time"):
        VerifiedTokens(4, timedelta(0))


def test_settings_bound_the_cache_or_turn_it_off(tmp_path: Path) -> None:
    secret = "x" * 48
    default = token_codec(BranchlineSettings(data_dir=tmp_path, jwt_secret=secret), "intake")
    assert (cache_of(default).max_entries, cache_of(default).max_age_s) == (4096, 60.0)
    sized = BranchlineSettings(
        data_dir=tmp_path,
        jwt_secret=secret,
        jwt_verified_cache_size=10,
        jwt_verified_cache_seconds=5,
    )
    cache = cache_of(token_codec(sized, "audit"))
    assert (cache.max_entries, cache.max_age_s) == (10, 5.0)
    off = BranchlineSettings(data_dir=tmp_path, jwt_secret=secret, jwt_verified_cache_size=0)
    assert token_codec(off, "followup").verified is None
    off = BranchlineSettings(data_dir=tmp_path, jwt_secret=secret, jwt_verified_cache_seconds=0)
    assert token_codec(off, "followup").verified is None
    with pytest.raises(ValueError, match="jwt_verified_cache_seconds"):
        BranchlineSettings(data_dir=tmp_path, jwt_secret=secret, jwt_verified_cache_seconds=3601)


def test_without_a_cache_every_token_is_verified_in_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    codec = TokenCodec.hs256(SECRET, issuer="branchline", audience=AUD)
    decode = CountingDecode(monkeypatch)
    value = token(clock)
    codec.verify(value)
    codec.verify(value)
    assert decode.calls == 2


class Visit(BaseModel):
    minutes: int


def app_with_a_writer_route(codec: TokenCodec) -> FastAPI:
    """A route guarded like intake's writes: ``require_roles`` and a body model."""
    app = FastAPI()
    install_problem_handlers(app)
    app.state.token_codec = codec

    @app.post("/visits")
    async def post_visit(
        visit: Visit, caller: Annotated[auth.Principal, auth.require_roles(Role.RM)]
    ) -> dict[str, Any]:
        return {"sub": caller.subject, "minutes": visit.minutes}

    return app


async def test_http_order_is_401_then_403_then_422_and_the_token_is_verified_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # require_roles reads the principal itself instead of through a nested dependency (#12):
    # the token is still judged before the body.
    clock = Clock()
    codec = cached_codec(clock)
    decode = CountingDecode(monkeypatch)
    auditor = jwt.encode(
        {
            "sub": "aud-1",
            "roles": ["auditor"],
            "iss": "branchline",
            "aud": [AUD],
            "iat": int(clock.now),
            "exp": int(clock.now) + 600,
        },
        SECRET,
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    rm = token(clock)
    transport = httpx.ASGITransport(app=app_with_a_writer_route(codec))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def post(body: Any, bearer: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            return await client.post("/visits", json=body, headers=headers)

        assert (await post({"minutes": "many"}, None)).status_code == 401
        assert (await post({"minutes": "many"}, token(clock, key="x" * 48))).status_code == 401
        assert (await post({"minutes": "many"}, auditor)).status_code == 403
        assert (await post({"minutes": "many"}, rm)).status_code == 422
        answer = await post({"minutes": 5}, rm)
        assert answer.status_code == 200
        assert answer.json() == {"sub": "rm-7", "minutes": 5}
    # the forged token twice over, the auditor's and the RM's once each
    assert decode.calls == 3

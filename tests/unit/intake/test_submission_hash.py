"""The submission hash is the keyed hash of the submission's dump as it always was: stored with
every accepted event, it is compared with a later submission of the same ``event_id`` (the
idempotency check), so a different digest for the same submission would turn a retry into a
conflict. #12 computes it through pydantic-core's serializer and the one-shot HMAC directly;
this holds it to the original formula."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from branchline_intake.application.submit import hmac_sha256, submission_hash
from branchline_shared.events.envelope import SubmittedEvent

pytestmark = pytest.mark.unit

_TOKENS = st.sampled_from(["C-1", "s-1", "BR-2", "rm-1", "a.b:c", "P-9"])
_TIMES = st.sampled_from(
    ["2026-12-03T10:00:00+08:00", "2026-12-03T02:00:00Z", "2026-12-02T23:59:59.123456-05:00"]
)
_DATA = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=6,
    ),
    max_size=4,
)


@st.composite
def submissions(draw: st.DrawFn) -> dict[str, Any]:
    subject = draw(st.sampled_from(["client_id", "product_id", "staff_id"]))
    item: dict[str, Any] = {
        "type": draw(st.sampled_from(["client.registered", "client.consent_granted", "x.y"])),
        "occurred_at": draw(_TIMES),
        subject: draw(_TOKENS),
        "actor": {"id": draw(_TOKENS), "role": "teller"},
        "data": draw(_DATA),
    }
    optional = {
        "event_id": st.uuids().map(str),
        "expected_version": st.integers(min_value=0, max_value=50),
        "branch_id": _TOKENS,
        "channel": st.sampled_from(["walk_in", "phone"]),
        "correlation_id": _TOKENS,
        "causation_id": _TOKENS,
        "late_entry": st.builds(lambda r: {"reason": r}, st.text(min_size=1, max_size=20)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        item[name] = draw(optional[name])
    return item


def _original(submitted: SubmittedEvent, key: bytes) -> bytes:
    content = submitted.model_dump(mode="json", exclude={"event_id", "expected_version"})
    return hmac.new(key, orjson.dumps(content, option=orjson.OPT_SORT_KEYS), "sha256").digest()


@settings(max_examples=200, deadline=None)
@given(item=submissions(), key=st.binary(min_size=1, max_size=64))
def test_the_hash_is_the_original_formulas(item: dict[str, Any], key: bytes) -> None:
    try:
        submitted = SubmittedEvent.model_validate(item)
    except ValidationError:
        return  # never hashed
    assert submission_hash(submitted, key) == _original(submitted, key)


def test_the_idempotency_key_and_the_expected_version_are_left_out() -> None:
    base = {
        "type": "client.registered",
        "occurred_at": "2026-12-03T10:00:00+08:00",
        "client_id": "C-1",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"client_type": "individual"},
    }
    plain = SubmittedEvent.model_validate(base)
    keyed = SubmittedEvent.model_validate(
        {**base, "event_id": str(uuid.uuid4()), "expected_version": 4}
    )
    other = SubmittedEvent.model_validate({**base, "client_id": "C-2"})
    assert submission_hash(plain, b"k") == submission_hash(keyed, b"k")
    assert submission_hash(plain, b"k") != submission_hash(other, b"k")
    assert submission_hash(plain, b"k") != submission_hash(plain, b"j")


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), message=st.binary(max_size=600))
def test_the_hmac_from_the_keys_pads_is_hmacs(key: bytes, message: bytes) -> None:
    # keys shorter, as long as and longer than SHA-256's block (then hashed first)
    assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")
    assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")  # the pads unchanged

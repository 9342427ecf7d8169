"""The name-based ids are exactly :func:`uuid.uuid5`'s (changing one would change every
stored task, timer and event id derived from it)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_shared.domain import ids
from branchline_shared.domain.ids import name_uuid, random_uuids

pytestmark = pytest.mark.unit


@given(namespace=st.uuids(), name=st.text(max_size=200))
def test_equals_uuid5_for_any_namespace_and_name(namespace: uuid.UUID, name: str) -> None:
    assert name_uuid(namespace, name) == uuid.uuid5(namespace, name)


def test_the_known_vector_of_pythons_documentation() -> None:
    derived = name_uuid(uuid.NAMESPACE_DNS, "python.org")
    assert derived == uuid.UUID("886313e1-3b8a-5372-9b90-0c9aee199e5d")
    assert derived.version == 5
    assert derived.variant == uuid.RFC_4122


@given(chunks=st.lists(st.binary(min_size=16, max_size=16), max_size=20))
def test_random_ids_are_uuid4s_of_their_random_bytes(chunks: list[bytes]) -> None:
    asked: list[int] = []

    def urandom(size: int) -> bytes:
        asked.append(size)
        return b"".join(chunks)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(ids.os, "urandom", urandom)
        drawn = random_uuids(len(chunks))
    assert drawn == [uuid.UUID(bytes=chunk, version=4) for chunk in chunks]
    assert asked == [16 * len(chunks)]  # one draw for all of them


def test_random_ids_are_version_4_and_differ() -> None:
    drawn = random_uuids(1000)
    assert {u.version for u in drawn} == {4}
    assert {u.variant for u in drawn} == {uuid.RFC_4122}
    assert len(set(drawn)) == 1000
    assert random_uuids(0) == []

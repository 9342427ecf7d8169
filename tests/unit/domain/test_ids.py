"""The name-based ids are exactly :func:`uuid.uuid5`'s (changing one would change every
stored task, timer and event id derived from it)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_shared.domain.ids import name_uuid

pytestmark = pytest.mark.unit


@given(namespace=st.uuids(), name=st.text(max_size=200))
def test_equals_uuid5_for_any_namespace_and_name(namespace: uuid.UUID, name: str) -> None:
    assert name_uuid(namespace, name) == uuid.uuid5(namespace, name)


def test_the_known_vector_of_pythons_documentation() -> None:
    derived = name_uuid(uuid.NAMESPACE_DNS, "python.org")
    assert derived == uuid.UUID("886313e1-3b8a-5372-9b90-0c9aee199e5d")
    assert derived.version == 5
    assert derived.variant == uuid.RFC_4122

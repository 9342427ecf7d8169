"""The name-based ids are exactly :func:`uuid.uuid5`'s (changing one would change every
stored task, timer and event id derived from it); the random ones are :func:`uuid.uuid4`'s,
of the same bytes, handed out once, also across a fork."""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_shared.domain import ids
from branchline_shared.domain.ids import name_uuid, random_uuid, random_uuids

pytestmark = pytest.mark.unit


@given(namespace=st.uuids(), name=st.text(max_size=200))
def test_equals_uuid5_for_any_namespace_and_name(namespace: uuid.UUID, name: str) -> None:
    assert _whole(name_uuid(namespace, name)) == _whole(uuid.uuid5(namespace, name))


def _whole(made: uuid.UUID) -> tuple[object, ...]:
    """Everything of an id (#12: made without ``UUID``'s constructor, as it makes them): its
    type, value, safety, text, hash and what a pickle of it reads back."""
    return (
        type(made),
        made.int,
        made.is_safe,
        str(made),
        hash(made),
        pickle.loads(pickle.dumps(made)),
    )


@given(value=st.integers(min_value=0, max_value=2**128 - 1))
def test_an_id_made_from_its_integer_is_the_constructors(value: int) -> None:
    assert _whole(ids._uuid_of(value)) == _whole(uuid.UUID(int=value))


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
    assert [_whole(u) for u in drawn] == [
        _whole(uuid.UUID(bytes=chunk, version=4)) for chunk in chunks
    ]
    assert asked == [16 * len(chunks)]  # one draw for all of them


def test_random_ids_are_version_4_and_differ() -> None:
    drawn = random_uuids(1000)
    assert {u.version for u in drawn} == {4}
    assert {u.variant for u in drawn} == {uuid.RFC_4122}
    assert len(set(drawn)) == 1000
    assert random_uuids(0) == []


@pytest.fixture
def nothing_read_ahead() -> Iterator[None]:
    ids._random.clear()
    yield
    ids._random.clear()


@pytest.mark.usefixtures("nothing_read_ahead")
def test_a_random_id_is_uuid4_of_the_same_random_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    block = os.urandom(16 * 256)
    reads: list[int] = []
    monkeypatch.setattr(ids.os, "urandom", lambda n: reads.append(n) or block[:n])
    made = [random_uuid() for _ in range(257)]
    expected = [uuid.UUID(bytes=block[i : i + 16], version=4) for i in range(0, len(block), 16)]
    assert made[:256] == expected  # what uuid.uuid4() makes of those bytes, in order
    assert reads == [16 * 256, 16 * 256]  # one read per 256 ids
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in made)


@pytest.mark.usefixtures("nothing_read_ahead")
def test_random_ids_are_distinct() -> None:
    made = {random_uuid() for _ in range(5000)}
    assert len(made) == 5000


@pytest.mark.usefixtures("nothing_read_ahead")
def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    random_uuid()  # the parent has ids read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, random_uuid().bytes)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    childs = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    assert childs != random_uuid()

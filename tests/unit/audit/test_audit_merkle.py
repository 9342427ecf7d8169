"""RFC 6962 / RFC 9162 Merkle trees: published vectors, a naive reference, forged proofs.

Expected values come from transparency-dev/merkle's published test vectors or from the naive
recursive definitions below, written straight from RFC 9162 section 2.1 and independent of the
code under test.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_audit.domain import merkle
from branchline_audit.domain.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    perfect_subtree_ranges,
    range_hasher_from_leaves,
    range_hasher_from_perfect,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.unit


# --- independent reference (RFC 9162 section 2.1, recursive, over raw leaf inputs) -----------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return ref_leaf(data[0])
    k = ref_split(n)
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = ref_split(n)
    if m < k:
        return [*ref_path(m, data[:k]), ref_mth(data[k:])]
    return [*ref_path(m - k, data[k:]), ref_mth(data[:k])]


def ref_subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if complete else [ref_mth(data)]
    k = ref_split(n)
    if m <= k:
        return [*ref_subproof(m, data[:k], complete), ref_mth(data[k:])]
    return [*ref_subproof(m - k, data[k:], False), ref_mth(data[:k])]


def ref_proof(m: int, data: list[bytes]) -> list[bytes]:
    return ref_subproof(m, data, True)


# --- transparency-dev/merkle proof/verify_test.go vectors ------------------------------------

VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
VECTOR_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
EMPTY_TREE_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def hexes(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# (0-based leaf index, tree size, audit path); the Go file numbers leaves from 1.
VECTOR_INCLUSION = [
    (
        0,
        8,
        hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        hexes(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, hexes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        hexes(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (0, 1, []),
]

VECTOR_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        hexes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        hexes(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        hexes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

VECTOR_LEAF_HASHES = [ref_leaf(d) for d in VECTOR_LEAVES]


def flip(value: bytes, index: int = 0, mask: int = 0x08) -> bytes:
    changed = bytearray(value)
    changed[index] ^= mask
    return bytes(changed)


# --- hashing and roots --------------------------------------------------------------------------


def test_the_reference_reproduces_the_published_roots() -> None:
    """Guards the test's own oracle before anything relies on it."""
    for size in range(1, 9):
        assert ref_mth(VECTOR_LEAVES[:size]) == VECTOR_ROOTS[size - 1]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == EMPTY_TREE_HEX
    assert merkle.root([]).hex() == EMPTY_TREE_HEX


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.leaf_hash(b"").hex() == VECTOR_ROOTS[0].hex()
    a, b = bytes(32), bytes([1]) * 32
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_published_vectors(size: int) -> None:
    leaves = [merkle.leaf_hash(d) for d in VECTOR_LEAVES[:size]]
    assert merkle.root(leaves) == VECTOR_ROOTS[size - 1]


def test_largest_power_of_two_below() -> None:
    for n in range(2, 300):
        assert merkle.largest_power_of_two_below(n) == ref_split(n)
    with pytest.raises(ValueError, match="at least 2"):
        merkle.largest_power_of_two_below(1)


# --- compact range ----------------------------------------------------------------------------


def random_leaves(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 40)) for _ in range(count)]


def test_compact_range_gives_the_root_at_every_size() -> None:
    data = random_leaves(130, seed=1)
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    for size in range(1, len(data) + 1):
        compact.append(ref_leaf(data[size - 1]))
        assert compact.size == size
        assert len(compact.hashes) == bin(size).count("1")
        assert compact.root() == ref_mth(data[:size])


def test_compact_range_resumes_from_its_persisted_state() -> None:
    data = random_leaves(77, seed=2)
    first = CompactRange()
    first.extend(ref_leaf(d) for d in data[:45])
    resumed = CompactRange.restore(first.size, first.hashes)
    resumed.extend(ref_leaf(d) for d in data[45:])
    assert resumed.root() == ref_mth(data)


def test_compact_range_refuses_impossible_state() -> None:
    with pytest.raises(ValueError, match="subtree hashes"):
        CompactRange.restore(3, [bytes(32)])
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange.restore(1, [b"short"])
    with pytest.raises(ValueError, match="negative"):
        CompactRange.restore(-1, [])
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append(b"not a hash")


# --- inclusion -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "path"), VECTOR_INCLUSION)
def test_inclusion_vectors(index: int, size: int, path: list[bytes]) -> None:
    leaves = VECTOR_LEAF_HASHES[:size]
    assert inclusion_proof(index, size, VECTOR_LEAF_HASHES) == path
    assert verify_inclusion(index, size, leaves[index], path, VECTOR_ROOTS[size - 1])
    for probe in forged_inclusion_probes(index, size, leaves[index], path, VECTOR_ROOTS[size - 1]):
        assert not verify_inclusion(*probe)


InclusionProbe = tuple[int, int, bytes, list[bytes], bytes]


def forged_inclusion_probes(
    index: int, size: int, leaf: bytes, path: list[bytes], root: bytes
) -> list[InclusionProbe]:
    """The corruptions transparency-dev/merkle checks, plus a few more."""
    some_hash = hashlib.sha256(b"some other hash").digest()
    probes: list[InclusionProbe] = [
        (index - 1, size, leaf, path, root),
        (index + 1, size, leaf, path, root),
        (index ^ 2, size, leaf, path, root),
        (index, size * 2, leaf, path, root),
        (index, size // 2, leaf, path, root),
        (index, size, b"WrongLeaf", path, root),
        (index, size, some_hash, path, root),
        (index, size, leaf, path, EMPTY_ROOT),
        (index, size, leaf, path, some_hash),
        (index, size, leaf, [*path, b""], root),
        (index, size, leaf, [*path, root], root),
        (index, size, leaf, [b"", *path], root),
        (index, size, leaf, [root, *path], root),
    ]
    for i in range(len(path)):
        for byte in (0, 31):
            forged = list(path)
            forged[i] = flip(forged[i], byte)
            probes.append((index, size, leaf, forged, root))
    if path:
        probes.append((index, size, leaf, path[:-1], root))
        probes.append((index, size, leaf, path[1:], root))
    if len(path) > 1:
        probes.append((index, size, leaf, [path[0], some_hash, *path[1:]], root))
        probes.append((index, size, leaf, [path[1], path[0], *path[2:]], root))
    return probes


def test_inclusion_single_entry_tree() -> None:
    leaf = merkle.leaf_hash(b"data")
    assert verify_inclusion(0, 1, leaf, [], leaf)
    assert not verify_inclusion(0, 1, leaf, [], b"")
    assert not verify_inclusion(0, 1, b"", [], leaf)
    assert not verify_inclusion(0, 1, b"", [], b"")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 4)])
def test_inclusion_outside_the_tree_never_verifies(index: int, size: int) -> None:
    some_hash = hashlib.sha256(b"x").digest()
    assert not verify_inclusion(index, size, some_hash, [], EMPTY_ROOT)
    assert not verify_inclusion(index, size, some_hash, [], some_hash)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(index, size, [some_hash] * max(size, 0))


@pytest.mark.parametrize("size", range(1, 71))
def test_every_inclusion_proof_of_random_trees(size: int) -> None:
    data = random_leaves(size, seed=size)
    leaves = [ref_leaf(d) for d in data]
    root = ref_mth(data)
    for index in range(size):
        path = inclusion_proof(index, size, leaves)
        assert path == ref_path(index, data)
        assert verify_inclusion(index, size, leaves[index], path, root)
        assert merkle.root_from_inclusion_proof(index, size, leaves[index], path) == root
        for probe in forged_inclusion_probes(index, size, leaves[index], path, root):
            assert not verify_inclusion(*probe), probe[:2]


def test_inclusion_against_an_earlier_tree_size() -> None:
    data = random_leaves(50, seed=7)
    leaves = [ref_leaf(d) for d in data]
    for size in (1, 17, 32, 33):
        for index in range(size):
            path = inclusion_proof(index, size, leaves)
            assert verify_inclusion(index, size, leaves[index], path, ref_mth(data[:size]))


# --- consistency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("m", "n", "path"), VECTOR_CONSISTENCY)
def test_consistency_vectors(m: int, n: int, path: list[bytes]) -> None:
    assert consistency_proof(m, n, VECTOR_LEAF_HASHES) == path
    root_m, root_n = VECTOR_ROOTS[m - 1], VECTOR_ROOTS[n - 1]
    assert verify_consistency(m, n, root_m, root_n, path)
    if path:
        for probe in forged_consistency_probes(m, n, root_m, root_n, path):
            assert not verify_consistency(*probe)


ConsistencyProbe = tuple[int, int, bytes, bytes, list[bytes]]


def forged_consistency_probes(
    m: int, n: int, root_m: bytes, root_n: bytes, path: list[bytes]
) -> list[ConsistencyProbe]:
    wrong_root = hashlib.sha256(b"WrongRoot").digest()
    probes: list[ConsistencyProbe] = [
        (m - 1, n, root_m, root_n, path),
        (m + 1, n, root_m, root_n, path),
        (m ^ 2, n, root_m, root_n, path),
        (m, n * 2, root_m, root_n, path),
        (m, n // 2, root_m, root_n, path),
        (m, n, wrong_root, root_n, path),
        (m, n, root_m, wrong_root, path),
        (m, n, b"WrongRoot", root_n, path),
        (m, n, root_n, root_m, path),
        (m, n, root_m, root_n, []),
        (m, n, root_m, root_n, [*path, b""]),
        (m, n, root_m, root_n, [*path, root_m]),
        (m, n, root_m, root_n, [*path, root_n]),
        (m, n, root_m, root_n, [b"", *path]),
        (m, n, root_m, root_n, [root_m, *path]),
        (m, n, root_m, root_n, [root_n, *path]),
        (m, n, root_m, root_n, [path[0], *path]),
        (m, n, root_m, root_n, path[:-1]),
    ]
    for i in range(len(path)):
        for byte in (0, 31):
            forged = list(path)
            forged[i] = flip(forged[i], byte, mask=0x10)
            probes.append((m, n, root_m, root_n, forged))
    return probes


def test_consistency_for_all_sizes_up_to_40() -> None:
    data = random_leaves(40, seed=40)
    leaves = [ref_leaf(d) for d in data]
    roots = [ref_mth(data[:size]) for size in range(41)]
    for n in range(41):
        for m in range(n + 1):
            path = consistency_proof(m, n, leaves)
            expected = [] if m in (0, n) else ref_proof(m, data[:n])
            assert path == expected, (m, n)
            assert verify_consistency(m, n, roots[m], roots[n], path), (m, n)
            if path:
                for probe in forged_consistency_probes(m, n, roots[m], roots[n], path):
                    assert not verify_consistency(*probe), (m, n, probe[:2])


def test_consistency_trivial_cases() -> None:
    some = hashlib.sha256(b"some").digest()
    other = hashlib.sha256(b"other").digest()
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, some, [])
    assert verify_consistency(3, 3, some, some, [])
    assert not verify_consistency(3, 3, some, other, [])
    assert not verify_consistency(3, 3, some, some, [EMPTY_ROOT])
    assert not verify_consistency(0, 5, EMPTY_ROOT, some, [EMPTY_ROOT])
    assert not verify_consistency(0, 5, some, some, [])  # the empty tree has one root
    assert not verify_consistency(0, 0, some, some, [])
    assert not verify_consistency(2, 1, some, other, [some])  # time travel
    assert not verify_consistency(1, 2, some, other, [])
    assert not verify_consistency(-1, 2, some, other, [some])
    with pytest.raises(ValueError, match="0 <= m <= n"):
        consistency_proof(3, 2, [some] * 3)


# --- proofs from a range hasher over cached complete subtrees ---------------------------------


def caching_perfect_hasher(
    leaves: list[bytes], calls: list[tuple[int, int]]
) -> Callable[[int, int], bytes]:
    """What a storage layer would do: serve complete, aligned subtrees from a cache."""

    @cache
    def perfect(start: int, end: int) -> bytes:
        width = end - start
        assert width & (width - 1) == 0, "only complete subtrees are asked for"
        assert start % width == 0, "and only aligned ones, so they can be cached for ever"
        calls.append((start, end))
        return merkle.root(leaves[start:end])

    return perfect


def test_proofs_from_complete_subtrees_only() -> None:
    data = random_leaves(70, seed=70)
    leaves = [ref_leaf(d) for d in data]
    calls: list[tuple[int, int]] = []
    source = range_hasher_from_perfect(caching_perfect_hasher(leaves, calls))
    for size in range(1, 71):
        for index in range(size):
            assert inclusion_proof(index, size, source) == ref_path(index, data[:size])
        for m in range(1, size):
            assert consistency_proof(m, size, source) == ref_proof(m, data[:size])
    assert len(calls) == len(set(calls))


def test_perfect_subtree_ranges_are_the_binary_digits_of_the_width() -> None:
    assert perfect_subtree_ranges(0, 13) == [(0, 8), (8, 12), (12, 13)]
    assert perfect_subtree_ranges(16, 24) == [(16, 24)]
    with pytest.raises(ValueError, match="start < end"):
        perfect_subtree_ranges(5, 5)


def test_leaf_range_hasher_refuses_ranges_beyond_its_leaves() -> None:
    range_hash = range_hasher_from_leaves([bytes(32)] * 4)
    with pytest.raises(ValueError, match="outside"):
        range_hash(2, 5)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(0, 5, [bytes(32)] * 4)


@cache
def _hypothesis_leaf(i: int) -> bytes:
    return ref_leaf(i.to_bytes(4, "big"))


@cache
def _hypothesis_root(size: int) -> bytes:
    return ref_mth([i.to_bytes(4, "big") for i in range(size)])


SIZE_AND_INDEX = st.integers(1, 600).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1)))
TWO_SIZES = st.integers(1, 600).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(database=None, deadline=None, max_examples=60)
@given(SIZE_AND_INDEX)
def test_inclusion_property_on_larger_trees(size_and_index: tuple[int, int]) -> None:
    size, index = size_and_index
    leaves = [_hypothesis_leaf(i) for i in range(size)]
    path = inclusion_proof(index, size, leaves)
    assert verify_inclusion(index, size, leaves[index], path, _hypothesis_root(size))
    assert not verify_inclusion(index, size, flip(leaves[index]), path, _hypothesis_root(size))


@settings(database=None, deadline=None, max_examples=60)
@given(TWO_SIZES)
def test_consistency_property_on_larger_trees(sizes: tuple[int, int]) -> None:
    m, n = sizes
    leaves = [_hypothesis_leaf(i) for i in range(n)]
    path = consistency_proof(m, n, leaves)
    assert verify_consistency(m, n, _hypothesis_root(m), _hypothesis_root(n), path)
    if path:
        assert not verify_consistency(m, n, _hypothesis_root(m), _hypothesis_root(n), path[:-1])

"""The subtree cache answers every range exactly like a rebuild from all leaves."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_audit.domain.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hasher_from_leaves,
)
from branchline_audit.domain.subtrees import (
    STRIDE,
    MissingTreeData,
    RecordingHasher,
    SubtreeSource,
    cached_levels,
    new_nodes,
    required,
)

pytestmark = pytest.mark.unit


def entry_hashes(count: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(count)]


def cache_for(hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
    """What the ledger stores as it appends, built the same way level by level."""
    nodes: dict[tuple[int, int], bytes] = {}
    for level in cached_levels(len(hashes)):
        complete = len(hashes) >> level
        if level == STRIDE:
            children = hashes[: complete << level]
        else:
            below = level - STRIDE
            children = [nodes[(below, i)] for i in range(complete << STRIDE)]
        for lvl, index, value in new_nodes(level, 0, children, from_leaves=level == STRIDE):
            nodes[(lvl, index)] = value
    return nodes


@given(size=st.integers(1, 5000), data=st.data())
def test_proofs_from_the_cache_equal_proofs_from_all_leaves(size: int, data: st.DataObject) -> None:
    hashes = entry_hashes(size)
    leaves = [leaf_hash(h) for h in hashes]
    nodes = cache_for(hashes)
    index = data.draw(st.integers(0, size - 1))
    recorder = RecordingHasher()
    inclusion_proof(index, size, recorder)
    needs = required(recorder.ranges)
    source = SubtreeSource(
        {i: hashes[i] for i in needs.leaf_indices}, {k: nodes[k] for k in needs.nodes}
    )
    assert inclusion_proof(index, size, source.range_hasher()) == inclusion_proof(
        index, size, range_hasher_from_leaves(leaves)
    )
    assert len(needs.leaf_indices) + len(needs.nodes) <= 2 * (1 << (STRIDE - 1)) * 64
    m = data.draw(st.integers(0, size))
    recorder = RecordingHasher()
    consistency_proof(m, size, recorder)
    needs = required(recorder.ranges)
    source = SubtreeSource(
        {i: hashes[i] for i in needs.leaf_indices}, {k: nodes[k] for k in needs.nodes}
    )
    assert consistency_proof(m, size, source.range_hasher()) == consistency_proof(
        m, size, range_hasher_from_leaves(leaves)
    )


def test_a_proof_in_a_huge_tree_needs_few_rows() -> None:
    size = 10**9 + 7
    recorder = RecordingHasher()
    inclusion_proof(123_456_789, size, recorder)
    needs = required(recorder.ranges)
    assert len(needs.leaf_indices) + len(needs.nodes) < 300


def test_missing_data_is_named() -> None:
    with pytest.raises(MissingTreeData):
        SubtreeSource({}, {}).perfect(0, 16)


def test_unaligned_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="aligned"):
        SubtreeSource({}, {}).perfect(3, 7)

"""A filtered export's proofs, page by page, from the subtrees they share: the same paths as
one proof at a time, what is read once is not read again, memory flat (#12)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.audit.test_audit_subtrees import cache_for, entry_hashes

from branchline_audit.domain.merkle import (
    inclusion_proof,
    leaf_hash,
    range_hasher_from_leaves,
    root,
    verify_inclusion,
)
from branchline_audit.domain.subtrees import (
    MissingTreeData,
    RecordingHasher,
    SharedProofs,
    SubtreeSource,
    required,
)

pytestmark = pytest.mark.unit


def _pages(indices: list[int], page: int) -> list[list[int]]:
    return [indices[i : i + page] for i in range(0, len(indices), page)]


def _shared_proofs(
    size: int, hashes: list[bytes], pages: list[list[int]]
) -> tuple[list[list[bytes]], int]:
    """Every page's proofs as the export makes them; and the rows read in all."""
    nodes = cache_for(hashes)
    shared = SharedProofs(size)
    proofs: list[list[bytes]] = []
    read = 0
    for page in pages:
        needs = shared.needs(page)
        read += len(needs.leaf_indices) + len(needs.nodes)
        shared.learn({i: hashes[i] for i in needs.leaf_indices}, {k: nodes[k] for k in needs.nodes})
        assert shared.needs(page) == required([])  # all of it is known now
        proofs.extend(shared.proof(i) for i in page)
        shared.forget_before(page[-1] + 1)
    return proofs, read


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 3000), data=st.data())
def test_the_paths_are_the_ones_of_one_proof_at_a_time(size: int, data: st.DataObject) -> None:
    hashes = entry_hashes(size)
    leaves = [leaf_hash(h) for h in hashes]
    indices = sorted(data.draw(st.sets(st.integers(0, size - 1), min_size=1, max_size=200)))
    page = data.draw(st.integers(1, 40))
    proofs, _ = _shared_proofs(size, hashes, _pages(indices, page))
    reference = range_hasher_from_leaves(leaves)
    tree_root = root(leaves)
    for index, proof in zip(indices, proofs, strict=True):
        assert proof == inclusion_proof(index, size, reference)
        assert verify_inclusion(index, size, leaves[index], proof, tree_root)


@pytest.mark.parametrize("size", [1, 2, 16, 17, 4096, 5000, 65_537])
def test_every_leaf_of_a_tree_contiguous_and_scattered(size: int) -> None:
    hashes = entry_hashes(size)
    leaves = [leaf_hash(h) for h in hashes]
    reference = range_hasher_from_leaves(leaves) if size <= 17 else None
    nodes = cache_for(hashes)
    for indices in (
        list(range(size))[:1200],
        list(range(0, size, 97))[:600],
        list(range(size))[-700:],
    ):
        proofs, _ = _shared_proofs(size, hashes, _pages(indices, 500))
        for index, proof in zip(indices, proofs, strict=True):
            if reference is None:  # one proof at a time from the cache, as the API's proof
                recorder = RecordingHasher()
                inclusion_proof(index, size, recorder)
                needs = required(recorder.ranges)
                source = SubtreeSource(
                    {i: hashes[i] for i in needs.leaf_indices}, {k: nodes[k] for k in needs.nodes}
                )
                assert proof == inclusion_proof(index, size, source.range_hasher())
            else:
                assert proof == inclusion_proof(index, size, reference)


def test_a_contiguous_page_reads_its_shared_subtrees_once() -> None:
    """500 neighbouring leaves of 100,003: one proof at a time the cache holds ~60 rows per
    proof; shared, the page reads about its own leaves and a few nodes above them."""
    size = 100_003
    hashes = entry_hashes(size)
    _, read = _shared_proofs(size, hashes, [list(range(40_000, 40_500))])
    assert read < 700
    _, read = _shared_proofs(size, hashes, _pages(list(range(40_000, 50_000)), 500))
    assert read < 10_000 + 1_000  # the leaves once, not again page after page


def test_memory_stays_flat_across_pages() -> None:
    size = 70_000
    hashes = entry_hashes(size)
    nodes = cache_for(hashes)
    shared = SharedProofs(size)
    held = []
    for page in _pages(list(range(0, size, 3)), 500):
        needs = shared.needs(page)
        shared.learn({i: hashes[i] for i in needs.leaf_indices}, {k: nodes[k] for k in needs.nodes})
        for index in page:
            shared.proof(index)
        shared.forget_before(page[-1] + 1)
        held.append(shared.known)
    assert max(held) < 200


def test_what_is_not_learnt_is_missing_and_named() -> None:
    shared = SharedProofs(100)
    assert shared.needs([5]).leaf_indices
    with pytest.raises(MissingTreeData, match="not stored"):
        shared.proof(5)


def test_leaves_outside_the_tree_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        SharedProofs(10).needs([10])
    with pytest.raises(ValueError, match="at least 1"):
        SharedProofs(0)

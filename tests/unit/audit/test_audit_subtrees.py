"""The subtree cache answers every range exactly like a rebuild from all leaves."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
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
    build_subtrees,
    cached_levels,
    new_nodes,
    required,
    subtree_work,
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


def _held(nodes: dict[tuple[int, int], bytes]) -> dict[int, int]:
    """How many nodes each level holds, as the ledger reads it (max index + 1)."""
    have: dict[int, int] = {}
    for level, index in nodes:
        have[level] = max(have.get(level, 0), index + 1)
    return have


def _cache_after(size: int, hashes: list[bytes], nodes: dict[tuple[int, int], bytes]) -> None:
    """One append's caching, as the ledger does it: reads exactly what the work names (a
    node it needs and did not name is missing, and raises), adds what it builds."""
    work = subtree_work(size, _held(nodes))
    entry_hashes = {i: hashes[i] for i in range(*work.leaves)}
    asked = {(lvl, i): nodes[(lvl, i)] for lvl, low, high in work.nodes for i in range(low, high)}
    for level, index, value in build_subtrees(work, entry_hashes, asked):
        assert (level, index) not in nodes
        nodes[(level, index)] = value


def _append_reading_past_the_parents(
    before: int, size: int, hashes: list[bytes], nodes: dict[tuple[int, int], bytes]
) -> None:
    """One append of leaves ``[before, size)`` as the ledger's statement before its COPY
    reads (``_BEFORE_APPEND``): the stored entries from the first leaf of the first
    level-STRIDE node not cached, the nodes of each level from the first child of its parent
    level's first node not cached; the appended leaves are at hand."""
    have = _held(nodes)
    leaves = {i: hashes[i] for i in range(have.get(STRIDE, 0) << STRIDE, before)}
    leaves.update({i: hashes[i] for i in range(before, size)})
    read = {
        (level, index): value
        for (level, index), value in nodes.items()
        if index >= have.get(level + STRIDE, 0) << STRIDE
    }
    for level, index, value in build_subtrees(subtree_work(size, have), leaves, read):
        assert (level, index) not in nodes
        nodes[(level, index)] = value


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.integers(1, 3000), min_size=1, max_size=8))
def test_caching_append_by_append_reads_what_it_names_and_builds_the_whole_cache(
    steps: list[int],
) -> None:
    """#12: the subtrees an append caches, from one read of the stored inputs it names, are
    the cache a build from all leaves gives, whatever the sizes of the appends."""
    hashes = entry_hashes(sum(steps))
    nodes: dict[tuple[int, int], bytes] = {}
    size = 0
    for step in steps:
        size += step
        _cache_after(size, hashes, nodes)
    assert nodes == cache_for(hashes)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(1, 3000), min_size=1, max_size=8), data=st.data())
def test_an_append_reading_past_the_last_complete_parents_builds_the_same_cache(
    steps: list[int], data: st.DataObject
) -> None:
    """#12: what an append reads before its COPY (the inputs past each level's last complete
    parent) plus its own leaves at hand build the cache a build from all leaves gives,
    whatever the sizes of the appends, also when the newest nodes went missing and are
    back-filled on the way."""
    hashes = entry_hashes(sum(steps))
    nodes: dict[tuple[int, int], bytes] = {}
    size = 0
    for step in steps:
        if data.draw(st.booleans(), label="drop the cache's newest nodes"):
            dropped = data.draw(st.integers(0, len(nodes)), label="how many")
            for key in sorted(nodes, key=lambda k: (-k[0], -k[1]))[:dropped]:
                del nodes[key]
        _append_reading_past_the_parents(size, size + step, hashes, nodes)
        size += step
    assert nodes == cache_for(hashes)


def test_missing_levels_and_nodes_are_back_filled() -> None:
    hashes = entry_hashes(9000)
    full = cache_for(hashes)
    nodes = {k: v for k, v in full.items() if k[0] == STRIDE or (k[0] == 2 * STRIDE and k[1] < 7)}
    _cache_after(len(hashes), hashes, nodes)
    assert nodes == full


def test_stored_inputs_that_are_not_there_are_named() -> None:
    work = subtree_work(512, {STRIDE: 32})
    assert work.build == ((2 * STRIDE, 0, 2),)
    assert work.nodes == ((STRIDE, 0, 32),)
    with pytest.raises(MissingTreeData):
        build_subtrees(work, {}, {})


@given(groups=st.integers(1, 9), first=st.integers(0, 2**40), from_leaves=st.booleans())
def test_new_nodes_are_the_rfc6962_roots_of_their_groups(
    groups: int, first: int, from_leaves: bool
) -> None:
    """Each node is the root of its 16 children by the reference tree (leaf hashes of entry
    hashes, or the children as they are), at its own index, however many groups at once."""
    children = entry_hashes(groups << STRIDE)
    level = STRIDE if from_leaves else 2 * STRIDE
    leaves = [leaf_hash(h) for h in children] if from_leaves else children
    reference = range_hasher_from_leaves(leaves)
    assert new_nodes(level, first, children, from_leaves=from_leaves) == [
        (level, first + g, reference(g << STRIDE, (g + 1) << STRIDE)) for g in range(groups)
    ]
    with pytest.raises(ValueError, match="groups of 16"):
        new_nodes(level, first, children[1:], from_leaves=from_leaves)

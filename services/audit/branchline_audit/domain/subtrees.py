"""Which complete subtrees the ledger caches, and how proofs are computed from them.

A proof over a tree of ``n`` leaves needs ``O(log n)`` range hashes (:mod:`.merkle`), each the
fold of a few *perfect* (aligned, power-of-two) subtrees. The ledger stores the root of every
perfect subtree whose level (log2 of its width) is a multiple of :data:`STRIDE` as entries are
appended (table ``audit_merkle_nodes``). Any perfect subtree is then at most ``2**(STRIDE-1)``
cached nodes or leaves away, so a proof in a ledger of any size reads a few hundred rows in two
queries, whatever its length, while the cache holds about ``n / 15`` rows.

The flow: :func:`required` names the leaves and nodes some ranges need; storage fetches them;
:class:`SubtreeSource` answers the ranges from what was fetched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from branchline_audit.domain.merkle import (
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    RangeHasher,
    leaf_hash,
    node_hash,
    perfect_subtree_ranges,
    range_hasher_from_perfect,
)

STRIDE = 4
"""Cached levels: 4, 8, 12, ... (16, 256, 4096, ... leaves wide)."""

NodeKey = tuple[int, int]
"""``(level, index)``: the perfect subtree over leaves ``[index * 2**level, (index + 1) *
2**level)``."""


def cached_levels(size: int) -> list[int]:
    """The cached levels that have at least one complete node in a tree of ``size`` leaves."""
    levels: list[int] = []
    level = STRIDE
    while (1 << level) <= size:
        levels.append(level)
        level += STRIDE
    return levels


def perfect_root(children: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree from its equal-sized child roots (a power-of-two count)."""
    count = len(children)
    if count == 0 or count & (count - 1):
        raise ValueError(f"a perfect subtree has a power-of-two number of children, got {count}")
    level = list(children)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _sources_of(start: int, end: int) -> tuple[list[int], list[NodeKey]]:
    """Leaf indices or cached nodes whose fold is the perfect subtree ``[start, end)``."""
    width = end - start
    if width <= 0 or width & (width - 1) or start % width:
        raise ValueError(f"[{start}, {end}) is not an aligned perfect subtree")
    level = width.bit_length() - 1
    cached = level - level % STRIDE
    if cached == 0:
        return list(range(start, end)), []
    step = 1 << cached
    return [], [(cached, i) for i in range(start // step, end // step)]


@dataclass(frozen=True)
class Requirements:
    leaf_indices: frozenset[int]
    nodes: frozenset[NodeKey]


def required(ranges: Iterable[tuple[int, int]]) -> Requirements:
    """Everything storage must fetch to hash the given ranges (any ``0 <= start < end``)."""
    leaves: set[int] = set()
    nodes: set[NodeKey] = set()
    for start, end in ranges:
        for piece_start, piece_end in perfect_subtree_ranges(start, end):
            piece_leaves, piece_nodes = _sources_of(piece_start, piece_end)
            leaves.update(piece_leaves)
            nodes.update(piece_nodes)
    return Requirements(frozenset(leaves), frozenset(nodes))


class MissingTreeData(LookupError):
    """Storage did not hold a leaf or cached node a range needs (a gap or a damaged cache)."""


class SubtreeSource:
    """Answers range hashes from fetched entry hashes (by leaf index) and cached nodes."""

    def __init__(self, entry_hashes: Mapping[int, bytes], nodes: Mapping[NodeKey, bytes]) -> None:
        self._entry_hashes = entry_hashes
        self._nodes = nodes

    def perfect(self, start: int, end: int) -> bytes:
        leaves, nodes = _sources_of(start, end)
        try:
            if leaves:
                return perfect_root([leaf_hash(self._entry_hashes[i]) for i in leaves])
            return perfect_root([self._nodes[key] for key in nodes])
        except KeyError as missing:
            raise MissingTreeData(f"tree data for {missing} is not stored") from None

    def range_hasher(self) -> RangeHasher:
        return range_hasher_from_perfect(self.perfect)


class RecordingHasher:
    """A stand-in :data:`RangeHasher` that records the ranges a proof asks for (first pass)."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        self.ranges.append((start, end))
        return bytes(HASH_SIZE)


def new_nodes(
    level: int, first_index: int, children: Sequence[bytes], *, from_leaves: bool
) -> list[tuple[int, int, bytes]]:
    """Cached nodes of ``level`` from ``first_index`` on, given their children in order:
    entry hashes when ``from_leaves`` (level == STRIDE), else nodes of ``level - STRIDE``."""
    fan_out = 1 << STRIDE
    if len(children) % fan_out:
        raise ValueError(f"children must come in groups of {fan_out}")
    # Every group's perfect root at once, a level of all groups at a time (the groups are
    # aligned, so no pair straddles two), with leaf_hash, node_hash and perfect_root written
    # out: an append builds about one node per entry it appends, and these were three Python
    # calls per entry (#12). The same RFC 6962 hashes.
    sha256 = hashlib.sha256
    nodes = [sha256(LEAF_PREFIX + h).digest() for h in children] if from_leaves else [*children]
    for _ in range(STRIDE):
        nodes = [
            sha256(NODE_PREFIX + nodes[i] + nodes[i + 1]).digest() for i in range(0, len(nodes), 2)
        ]
    return [(level, first_index + i, root) for i, root in enumerate(nodes)]


@dataclass(frozen=True)
class SubtreeWork:
    """What caching every complete subtree of a tree of some size takes, given how many nodes
    each cached level holds: the nodes to build (``(level, first index, end index)``, lowest
    level first) and the stored data they need besides what is built on the way: entry hashes
    by leaf index ``[leaves[0], leaves[1])`` and nodes ``(level, first, end)``. An append
    then reads all of it in one statement and writes all new nodes in one (#12), instead of
    three statements per level."""

    build: tuple[tuple[int, int, int], ...]
    leaves: tuple[int, int]
    nodes: tuple[tuple[int, int, int], ...]


def subtree_work(size: int, have: Mapping[int, int]) -> SubtreeWork:
    """:class:`SubtreeWork` for a tree of ``size`` leaves whose cache holds nodes
    ``[0, have[level])`` of each cached level (a level missing from ``have`` holds none)."""
    build: list[tuple[int, int, int]] = []
    leaves = (0, 0)
    nodes: list[tuple[int, int, int]] = []
    for level in cached_levels(size):
        first, end = have.get(level, 0), size >> level
        if first >= end:
            continue
        build.append((level, first, end))
        low, high = first << STRIDE, end << STRIDE
        if level == STRIDE:
            leaves = (low, high)
            continue
        # Children below what the level beneath holds are stored; the rest are built first.
        stored_end = min(high, have.get(level - STRIDE, 0))
        if low < stored_end:
            nodes.append((level - STRIDE, low, stored_end))
    return SubtreeWork(tuple(build), leaves, tuple(nodes))


def build_subtrees(
    work: SubtreeWork, entry_hashes: Mapping[int, bytes], stored: Mapping[NodeKey, bytes]
) -> list[tuple[int, int, bytes]]:
    """The nodes ``work`` names, level by level, from the entry hashes (by leaf index) and
    stored nodes it asked for and the nodes built on the way."""
    built: dict[NodeKey, bytes] = {}
    rows: list[tuple[int, int, bytes]] = []
    for level, first, end in work.build:
        span = range(first << STRIDE, end << STRIDE)
        try:
            if level == STRIDE:
                children = [entry_hashes[i] for i in span]
            else:
                keys = [(level - STRIDE, i) for i in span]
                children = [stored[k] if k in stored else built[k] for k in keys]
        except KeyError as missing:
            raise MissingTreeData(f"tree data for {missing} is not stored") from None
        for node in new_nodes(level, first, children, from_leaves=level == STRIDE):
            built[(node[0], node[1])] = node[2]
            rows.append(node)
    return rows

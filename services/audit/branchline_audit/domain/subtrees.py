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
    fold_subtree_roots,
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


class SharedProofs:
    """Inclusion proofs in one tree of many leaves, asked page by page in increasing order, as
    a filtered export asks them: the subtree hashes the proofs have in common are computed (or
    read) once, not once per proof (#12).

    The tree of ``size`` leaves is the perfect subtrees of the binary digits of ``size``, left
    to right, largest first (:func:`~.merkle.perfect_subtree_ranges`); the leaf ``i`` is in
    the one of level ``(i ^ size).bit_length() - 1``. Its path (RFC 9162 section 2.1.3.1, as
    :func:`~.merkle.inclusion_proof` gives it, leaf upwards) is the sibling of its ancestor at
    each level of that subtree, ``(level, (i >> level) ^ 1)``, then the subtree's *tail*: the
    fold of the smaller subtrees to its right (if any), then the larger ones to its left,
    nearest first. A tail is computed once per export. Every perfect subtree is kept as it is
    computed, from its two halves (the same RFC 6962 hashes as :func:`perfect_root` over its
    children), down to a cached level (a stored node) or a leaf (an entry hash):
    :meth:`needs` names only what is not known yet, :meth:`learn` takes it, :meth:`proof`
    answers, and :meth:`forget_before` drops what no later leaf can use, so memory stays flat
    whatever the export's size.
    """

    __slots__ = ("_known", "_size", "_tails")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a tree with leaves has a size of at least 1, got {size}")
        self._size = size
        self._known: dict[NodeKey, bytes] = {}
        self._tails: dict[int, list[bytes]] = {}

    @property
    def known(self) -> int:
        """How many subtree hashes are held (memory; for the tests)."""
        return len(self._known)

    def _level_of(self, index: int) -> int:
        """The level of the size's subtree holding leaf ``index``."""
        if not 0 <= index < self._size:
            raise ValueError(f"leaf index {index} is outside a tree of size {self._size}")
        return (index ^ self._size).bit_length() - 1

    def _piece(self, level: int) -> NodeKey:
        """The key of the size's subtree of ``level`` (a set bit of the size)."""
        return level, (self._size >> (level + 1)) << 1

    def _tail_pieces(self, level: int) -> tuple[list[NodeKey], list[NodeKey]]:
        """The subtrees right of the size's subtree of ``level`` (largest first), and left of
        it (nearest first)."""
        size = self._size
        right = [self._piece(b) for b in reversed(range(level)) if size >> b & 1]
        left = [self._piece(b) for b in range(level + 1, size.bit_length()) if size >> b & 1]
        return right, left

    def needs(self, indices: Iterable[int]) -> Requirements:
        """The entry hashes (by leaf index) and cached nodes the proofs of ``indices`` need
        that are not known yet."""
        leaves: set[int] = set()
        nodes: set[NodeKey] = set()
        seen: set[NodeKey] = set()
        pending: list[NodeKey] = []
        known, tails = self._known, self._tails
        for index in indices:
            top = self._level_of(index)
            pending.extend([(level, (index >> level) ^ 1) for level in range(top)])
            if top not in tails:
                right, left = self._tail_pieces(top)
                pending.extend(right)
                pending.extend(left)
            while pending:
                key = pending.pop()
                if key in known or key in seen:
                    continue
                seen.add(key)
                level, node = key
                if level == 0:
                    leaves.add(node)
                elif level % STRIDE == 0:
                    nodes.add(key)
                else:
                    pending.append((level - 1, 2 * node))
                    pending.append((level - 1, 2 * node + 1))
        return Requirements(frozenset(leaves), frozenset(nodes))

    def learn(self, entry_hashes: Mapping[int, bytes], nodes: Mapping[NodeKey, bytes]) -> None:
        """Take what storage read for :meth:`needs`: entry hashes by leaf index, cached
        nodes by key."""
        known = self._known
        for index, entry_hash in entry_hashes.items():
            known[(0, index)] = leaf_hash(entry_hash)
        known.update(nodes)

    def _perfect(self, key: NodeKey) -> bytes:
        known = self._known
        value = known.get(key)
        if value is not None:
            return value
        level, node = key
        if level % STRIDE == 0:  # a leaf or a cached node: read, never computed
            raise MissingTreeData(f"tree data for {key} is not stored")
        value = node_hash(
            self._perfect((level - 1, 2 * node)), self._perfect((level - 1, 2 * node + 1))
        )
        known[key] = value
        return value

    def proof(self, index: int) -> list[bytes]:
        """``PATH(index, D[size])``, leaf upwards, as :func:`~.merkle.inclusion_proof` gives
        it; :class:`MissingTreeData` if what :meth:`needs` named was not learnt."""
        top = self._level_of(index)
        tail = self._tails.get(top)
        if tail is None:
            right, left = self._tail_pieces(top)
            tail = [fold_subtree_roots([self._perfect(k) for k in right])] if right else []
            tail += [self._perfect(k) for k in left]
            self._tails[top] = tail
        known, perfect = self._known, self._perfect
        path = []
        for level in range(top):
            key = (level, (index >> level) ^ 1)
            value = known.get(key)
            path.append(value if value is not None else perfect(key))
        return path + tail

    def forget_before(self, index: int) -> None:
        """Drop every subtree no proof of a leaf at ``index`` or later uses: one wholly left
        of ``index`` is used only as a left sibling, so only a left child whose right
        neighbour reaches ``index`` or beyond is kept (one per level at most). The tails are
        kept (one per set bit of the size)."""
        keep: dict[NodeKey, bytes] = {}
        for key, value in self._known.items():
            level, node = key
            end = (node + 1) << level
            if end > index or (not node & 1 and end + (1 << level) > index):
                keep[key] = value
        self._known = keep

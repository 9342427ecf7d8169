"""A message's partition from its key: aiokafka's default partitioner, in less Python (#12).

Kafka's own clients put a keyed message in partition ``murmur2(key) & 0x7FFFFFFF`` modulo the
topic's partition count, and per-key order (every event of a client in one partition, in
order) rests on every producer agreeing on it. aiokafka computes murmur2 in pure Python one
byte at a time (about 3 to 6 µs per key on the benchmark's machine, once per message the outbox
relay publishes); this is the same function, reading the key's 4-byte blocks in one
``struct`` call and without the masks that change nothing, so the partitions are exactly
aiokafka's (tests/unit/test_partitioning.py compares the two on random keys of every length).
It is given to the producer through its public ``partitioner`` argument.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_BLOCKS = tuple(struct.Struct(f"<{n}I") for n in range(64))
"""Little-endian unsigned 32-bit blocks, as the Java client reads them, for keys of up to 255
bytes (every key Branchline sends: a subject id); longer keys build their format per call."""


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) of ``data``, an
    unsigned 32-bit value, equal to ``aiokafka.partitioner.murmur2``."""
    length = len(data)
    h = _SEED ^ length
    blocks = length >> 2
    words = (
        _BLOCKS[blocks].unpack_from(data)
        if blocks < len(_BLOCKS)
        else struct.unpack_from(f"<{blocks}I", data)
    )
    for k in words:
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra:
        tail = length & ~3
        if extra >= 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def default_partition(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """``aiokafka.partitioner.DefaultPartitioner``'s choice: a keyed message by its key's
    murmur2 over every partition (available or not, so a key's partition never moves while a
    broker is down); one without a key at random, among the available ones if any."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]

"""Name-based ids (RFC 9562 version 5, SHA-1), as :func:`uuid.uuid5` derives them; random
ids (version 4) drawn many at a time.

Every id Branchline derives from what it already knows (a task from the event that made it
due, a task's creation event, a timer, a refusal) is a version 5 UUID: the same inputs give
the same id in every process and every rebuild, which is what makes those writes
effectively once. The followup worker and the rebuild derive tens of them per deciding
event; :func:`uuid.uuid5` spends most of its time in ``UUID(bytes=..., version=...)``
(checks and conversions of its general constructor), so this builds the same value from the
digest's integer directly (#12). The result is equal to :func:`uuid.uuid5`'s for every
input (``tests/unit/domain/test_ids.py`` checks that on random namespaces and names).

:func:`random_uuids` is :func:`uuid.uuid4` for many ids at once: one ``os.urandom`` call
(one system call) for all of them instead of one each, and the same bits set (#12: a batch
of 1,000 events draws 1,000 new event ids).
"""

from __future__ import annotations

import hashlib
import os
import uuid

_VERSION_AND_VARIANT_BITS = (0xF000 << 64) | (0xC000 << 48)
_VERSION_5_RFC_VARIANT = (5 << 76) | (0x8000 << 48)
_VERSION_4_RFC_VARIANT = (4 << 76) | (0x8000 << 48)


def name_uuid(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """``uuid.uuid5(namespace, name)``, derived without its general constructor."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    return uuid.UUID(int=(value & ~_VERSION_AND_VARIANT_BITS) | _VERSION_5_RFC_VARIANT)


def random_uuids(count: int) -> list[uuid.UUID]:
    """``count`` ids as ``uuid.uuid4()`` makes them (``UUID(bytes=os.urandom(16),
    version=4)``: 122 random bits from the operating system's generator, the version and the
    variant set), their random bytes drawn by one ``os.urandom`` call. Drawn when needed, never
    kept for later: a pool kept in a module would be copied into every forked worker."""
    entropy = os.urandom(16 * count)
    return [
        uuid.UUID(
            int=(int.from_bytes(entropy[at : at + 16], "big") & ~_VERSION_AND_VARIANT_BITS)
            | _VERSION_4_RFC_VARIANT
        )
        for at in range(0, 16 * count, 16)
    ]

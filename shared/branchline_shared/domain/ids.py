"""Name-based ids (RFC 9562 version 5, SHA-1), as :func:`uuid.uuid5` derives them.

Every id Branchline derives from what it already knows (a task from the event that made it
due, a task's creation event, a timer, a refusal) is a version 5 UUID: the same inputs give
the same id in every process and every rebuild, which is what makes those writes
effectively once. The followup worker and the rebuild derive tens of them per deciding
event; :func:`uuid.uuid5` spends most of its time in ``UUID(bytes=..., version=...)``
(checks and conversions of its general constructor), so this builds the same value from the
digest's integer directly (#12). The result is equal to :func:`uuid.uuid5`'s for every
input (``tests/unit/domain/test_ids.py`` checks that on random namespaces and names).
"""

from __future__ import annotations

import hashlib
import uuid

_VERSION_AND_VARIANT_BITS = (0xF000 << 64) | (0xC000 << 48)
_VERSION_5_RFC_VARIANT = (5 << 76) | (0x8000 << 48)


def name_uuid(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """``uuid.uuid5(namespace, name)``, derived without its general constructor."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    return uuid.UUID(int=(value & ~_VERSION_AND_VARIANT_BITS) | _VERSION_5_RFC_VARIANT)

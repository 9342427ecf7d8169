"""Name-based ids (RFC 9562 version 5, SHA-1), as :func:`uuid.uuid5` derives them, and
random ones (version 4) as :func:`uuid.uuid4` makes them.

Every id Branchline derives from what it already knows (a task from the event that made it
due, a task's creation event, a timer, a refusal) is a version 5 UUID: the same inputs give
the same id in every process and every rebuild, which is what makes those writes
effectively once. The followup worker and the rebuild derive tens of them per deciding
event; :func:`uuid.uuid5` spends most of its time in ``UUID(bytes=..., version=...)``
(checks and conversions of its general constructor), so this builds the same value from the
digest's integer directly (#12). The result is equal to :func:`uuid.uuid5`'s for every
input (``tests/unit/domain/test_ids.py`` checks that on random namespaces and names).

A random id (:func:`random_uuid`: every accepted event sent without an id, every request's
correlation id) is :func:`uuid.uuid4`'s: 122 bits of the operating system's CSPRNG
(``os.urandom``), the rest version and variant. ``uuid4`` reads 16 bytes per id, a
``getrandom`` system call each time, and builds the id by its general constructor; here the
bytes are read for 256 ids at once and the id is built from its integer (#12). The bytes are
the same kind (``os.urandom``'s), so the ids are as unguessable as before: nothing may be
derived from a generated id being new (intake looks no generated id up) unless no one can
guess it. A forked child drops the ids its parent read ahead, or parent and child would hand
out the same ones; a ``deque`` hands each out once even between threads.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import deque

_VERSION_AND_VARIANT_BITS = (0xF000 << 64) | (0xC000 << 48)
_VERSION_5_RFC_VARIANT = (5 << 76) | (0x8000 << 48)
_VERSION_4_RFC_VARIANT = (4 << 76) | (0x8000 << 48)

_RANDOM_IDS_PER_READ = 256
_random: deque[int] = deque()  # random 128-bit values read ahead, each handed out once
os.register_at_fork(after_in_child=_random.clear)


def name_uuid(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """``uuid.uuid5(namespace, name)``, derived without its general constructor."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    return uuid.UUID(int=(value & ~_VERSION_AND_VARIANT_BITS) | _VERSION_5_RFC_VARIANT)


def random_uuid() -> uuid.UUID:
    """``uuid.uuid4()``: version 4 of 16 bytes of ``os.urandom``, read ahead in bulk."""
    try:
        value = _random.popleft()
    except IndexError:
        block = os.urandom(16 * _RANDOM_IDS_PER_READ)
        _random.extend(int.from_bytes(block[i : i + 16], "big") for i in range(0, len(block), 16))
        value = _random.popleft()
    return uuid.UUID(int=(value & ~_VERSION_AND_VARIANT_BITS) | _VERSION_4_RFC_VARIANT)

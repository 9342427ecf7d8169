"""Name-based ids (RFC 9562 version 5, SHA-1), as :func:`uuid.uuid5` derives them; random
ids (version 4) drawn many at a time, or one at a time from ids read ahead.

Every id Branchline derives from what it already knows (a task from the event that made it
due, a task's creation event, a timer, a refusal) is a version 5 UUID: the same inputs give
the same id in every process and every rebuild, which is what makes those writes
effectively once. The followup worker and the rebuild derive tens of them per deciding
event; :func:`uuid.uuid5` spends most of its time in ``UUID(bytes=..., version=...)``
(checks and conversions of its general constructor), so this builds the same value from the
digest's integer directly (#12), setting what that constructor sets (:func:`_uuid_of`). The
result is equal to :func:`uuid.uuid5`'s for every input (``tests/unit/domain/test_ids.py``
checks that on random namespaces and names).

:func:`random_uuids` is :func:`uuid.uuid4` for many ids at once: one ``os.urandom`` call
(one system call) for all of them instead of one each, and the same bits set (#12: a batch
of 1,000 events draws 1,000 new event ids).

A single random id asked for on its own (:func:`random_uuid`: each request's correlation id
at the edge) is :func:`uuid.uuid4`'s too: 122 bits of ``os.urandom``, the rest version and
variant. ``uuid4`` reads 16 bytes per id, a ``getrandom`` system call each time; here the
bytes are read for 256 ids at once and each id is built from its integer (#12). The bytes
are ``os.urandom``'s either way, so the ids are as unguessable as before. A forked child
drops the ids its parent read ahead (``os.register_at_fork``), or parent and child would
hand out the same ones; a ``deque`` hands each out once, even between threads.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import deque

_VERSION_AND_VARIANT_BITS = (0xF000 << 64) | (0xC000 << 48)
_VERSION_5_RFC_VARIANT = (5 << 76) | (0x8000 << 48)
_VERSION_4_RFC_VARIANT = (4 << 76) | (0x8000 << 48)

_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown

_RANDOM_IDS_PER_READ = 256
_random: deque[int] = deque()  # random 128-bit values read ahead, each handed out once
os.register_at_fork(after_in_child=_random.clear)


def name_uuid(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """``uuid.uuid5(namespace, name)``, derived without its general constructor."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    return _uuid_of((value & ~_VERSION_AND_VARIANT_BITS) | _VERSION_5_RFC_VARIANT)


def _uuid_of(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a 128-bit ``value``: the two attributes its constructor
    sets at its end (``int``; ``is_safe``, unknown), without its checks of which of its five
    arguments was given and of the range, which cost as much again (#12: four name ids per
    task the followup worker creates). Only for values made here, in range by construction."""
    made = _new(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN)
    return made


def random_uuids(count: int) -> list[uuid.UUID]:
    """``count`` ids as ``uuid.uuid4()`` makes them (``UUID(bytes=os.urandom(16),
    version=4)``: 122 random bits from the operating system's generator, the version and the
    variant set), their random bytes drawn by one ``os.urandom`` call when asked for (a batch
    asks for all of its new event ids at once)."""
    return [_version_4(value) for value in _random_values(count)]


def random_uuid() -> uuid.UUID:
    """``uuid.uuid4()``: version 4 of 16 bytes of ``os.urandom``, read ahead in bulk (a forked
    child drops what its parent read ahead: see the module docstring)."""
    try:
        value = _random.popleft()
    except IndexError:
        _random.extend(_random_values(_RANDOM_IDS_PER_READ))
        value = _random.popleft()
    return _version_4(value)


def _random_values(count: int) -> list[int]:
    """``count`` random 128-bit values from one ``os.urandom`` call."""
    entropy = os.urandom(16 * count)
    return [int.from_bytes(entropy[at : at + 16], "big") for at in range(0, 16 * count, 16)]


def _version_4(value: int) -> uuid.UUID:
    return _uuid_of((value & ~_VERSION_AND_VARIANT_BITS) | _VERSION_4_RFC_VARIANT)

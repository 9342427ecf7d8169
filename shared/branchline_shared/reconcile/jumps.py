"""Seeing a gap the moment it arrives: a position jump in a stream.

Every event belongs to a stream of its store (a client's, a task's) whose versions count up
by one, and a stream's events share one message key, hence one partition, and reach a
consumer in the order they were stored. An event whose version is more than one past the
last version the consumer saw of its stream therefore skips events it has not seen: the
broker lost them (or they were dead-lettered). The consumer says so at once (metric, log
line) and triggers the same repair as its periodic self-check, instead of waiting for it.

Why streams and not the stores' global positions: a consumer receives a store's events over
several partitions, interleaved, and a rolled-back transaction burns global positions for
good, so a jump in global positions proves nothing. An event older than the last one seen (a
re-publish) is not a jump. Streams the consumer has not seen since it started are not judged
(the periodic self-check covers what lies before).

How the table is kept (#12): the last version of up to ``max_streams`` streams, forgetting
the least recently advanced one, in a few arrays allocated once at their bound rather than a
dict of one key string (and an ordered-dict node) per stream. Those keys were the only
long-lived small objects replaced all the time, the likeliest to pin the 1 MiB pymalloc arenas
they were allocated in, which is how the consumers' resident size grew with the bursts they
worked through while their live data stayed flat (docs/performance.md, Round 7). Here a
stream costs no Python object while it is remembered: its key's bytes, its version and its
links are slots of the arrays.

Why a collision can never hide a jump: the hash only chooses the bucket a stream's entry is
chained in; a stream is found only by comparing its whole key, byte for byte, so two streams
whose hashes collide are two entries of one chain and are judged apart. Keys longer than
``KEY_WIDTH`` bytes (identifiers allow up to 128 characters) are stored as a marker byte
(0xFF, which UTF-8 never contains, so it cannot equal a short key) and their 256-bit BLAKE2b
digest: two such keys share an entry only if their digests are equal, which no one can bring
about (a chance below 2**-190 even among a billion such keys, far below a memory error's).
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from hashlib import blake2b

from prometheus_client import Counter

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition

log = logging.getLogger(__name__)

POSITION_JUMPS = Counter(
    "branchline_consumer_position_jumps_total",
    "Events that skipped versions of their stream the consumer had not seen (a gap, seen "
    "at once); each triggers the consumer's self-repair",
    ["consumer"],
)


KEY_WIDTH = 64
"""Bytes of a stream's key (``source/stream_id``, UTF-8) stored as they are; longer ones are
stored as their digest (above)."""

_LONG_KEY = b"\xff"
_NONE = -1


class PositionJumps:
    """The last version seen of each stream (the ``max_streams`` most recently advanced), and
    what to do on a jump."""

    def __init__(
        self,
        consumer: str,
        on_jump: Callable[[], None] | None = None,
        *,
        max_streams: int = 100_000,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self._consumer = consumer
        self._on_jump = on_jump
        self._max_streams = max_streams
        self._used = 0  # entries 0 .. used-1 hold a stream
        # Buckets: at least twice the entries, so chains stay about one entry long. Python's
        # hash of bytes is SipHash with a key drawn per process: it only has to be stable
        # within this process (the table is never stored or shared) and no sender can aim
        # their stream ids at one bucket.
        buckets = 1 << (2 * max_streams - 1).bit_length()
        self._mask = buckets - 1
        self._hash: Callable[[bytes], int] = hash
        self._heads = array("i", [_NONE]) * buckets  # bucket -> its first entry
        # Per entry:
        self._chain = array("i", [_NONE]) * max_streams  # the next entry of its bucket
        self._bucket = array("i", [0]) * max_streams
        self._keys = bytearray(max_streams * KEY_WIDTH)
        self._lengths = array("B", bytes(max_streams))
        self._versions = array("q", [0]) * max_streams
        self._older = array("i", [_NONE]) * max_streams  # recency list, doubly linked
        self._newer = array("i", [_NONE]) * max_streams
        self._newest = _NONE
        self._oldest = _NONE

    def __len__(self) -> int:
        """The number of streams remembered."""
        return self._used

    def seen(self, event: RecordedEvent, position: SourcePosition | None = None) -> bool:
        """Record ``event``; True when it jumped past versions of its stream not seen."""
        key = f"{event.source}/{event.stream_id}".encode()
        if len(key) > KEY_WIDTH:
            key = _LONG_KEY + blake2b(key, digest_size=32).digest()
        version = event.stream_version
        bucket = self._hash(key) & self._mask
        # The entry holding exactly this key (inline: this runs for every event).
        width = len(key)
        keys, lengths, chain = self._keys, self._lengths, self._chain
        entry = self._heads[bucket]
        while entry != _NONE:
            # The whole key, in place (no slice copied): its length, then its bytes.
            if lengths[entry] == width and keys.startswith(key, entry * KEY_WIDTH):
                break
            entry = chain[entry]
        else:
            self._remember(key, bucket, version)
            return False  # first seen since start (or forgotten): the self-check's
        last = self._versions[entry]
        if version <= last:
            return False  # a redelivery or a re-publish: older, not a gap
        self._versions[entry] = version
        newest = self._newest
        if entry != newest:  # made the newest (inline, as above); it has a newer one
            older_links, newer_links = self._older, self._newer
            older, newer = older_links[entry], newer_links[entry]
            if older == _NONE:
                self._oldest = newer
            else:
                newer_links[older] = newer
            older_links[newer] = older
            older_links[entry] = newest
            newer_links[entry] = _NONE
            newer_links[newest] = entry
            self._newest = entry
        if version == last + 1:
            return False
        POSITION_JUMPS.labels(self._consumer).inc()
        log.warning(
            "consumer received a position jump; checking the stores for what it skipped",
            extra={
                "consumer": self._consumer,
                "stream_id": event.stream_id,
                "expected_version": last + 1,
                "received_version": version,
                "source": position.source if position else event.source,
                "global_position": position.global_position if position else None,
            },
        )
        if self._on_jump is not None:
            self._on_jump()
        return True

    def _remember(self, key: bytes, bucket: int, version: int) -> None:
        if self._used < self._max_streams:
            entry = self._used
            self._used += 1
        else:  # full: the least recently advanced stream is forgotten, its entry reused
            entry = self._oldest
            self._unlink(entry)
            self._unchain(entry)
        start = entry * KEY_WIDTH
        self._keys[start : start + len(key)] = key
        self._lengths[entry] = len(key)
        self._versions[entry] = version
        self._bucket[entry] = bucket
        self._chain[entry] = self._heads[bucket]
        self._heads[bucket] = entry
        self._link_newest(entry)

    def _unchain(self, entry: int) -> None:
        bucket = self._bucket[entry]
        follow = self._chain[entry]
        at = self._heads[bucket]
        if at == entry:
            self._heads[bucket] = follow
            return
        while self._chain[at] != entry:
            at = self._chain[at]
        self._chain[at] = follow

    def _unlink(self, entry: int) -> None:
        older, newer = self._older[entry], self._newer[entry]
        if older == _NONE:
            self._oldest = newer
        else:
            self._newer[older] = newer
        if newer == _NONE:
            self._newest = older
        else:
            self._older[newer] = older

    def _link_newest(self, entry: int) -> None:
        self._older[entry] = self._newest
        self._newer[entry] = _NONE
        if self._newest == _NONE:
            self._oldest = entry
        else:
            self._newer[self._newest] = entry
        self._newest = entry

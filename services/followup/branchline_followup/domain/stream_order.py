"""Each stream's versions in order, for a rebuild from the topics (#12).

A topic holds a stream's events in the order they were published. A copy re-queued or
re-published after later versions went out (the repair of a broker's lost log) comes after
them: the live worker applied it late, and a rebuild that replays the topic as it is would
apply it late again (reconcile: *out of order* for ever for a product's or a staff member's
event, which nothing re-projects). :class:`StreamOrder` puts each stream's versions in order
with bounded memory:

- an event of a stream not remembered (its first, or one forgotten) is released as it comes,
  and its version remembered: a topic whose start was cut (retention) is not waited for;
- an event one version past the last released (or older: a copy, dropped by id where it is
  applied) is released at once;
- an event more than one version past it opens a *gap*: it is held back, with every later
  event of its stream, until the missing version arrives; then that one is released and the
  held ones that follow it in order. :meth:`StreamOrder.rest` releases what is still held when
  the log ends, stream by stream in version order (a version lost for good: its later
  versions are applied in order, without it).

Memory: the last version released of at most ``remembered`` streams (the least recently seen
forgotten first) and at most ``max_held`` held events: one more is refused
(:class:`TooManyHeld`), the rebuild fails and the operator raises the bound or rebuilds from
the stores. Both bounds are settings of the rebuild (``followup_rebuild_remembered_streams``,
``followup_rebuild_max_held``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

REMEMBERED_STREAMS = 131_072
"""Streams whose last released version a rebuild remembers (≈ 130 bytes each) by default
(the setting ``followup_rebuild_remembered_streams``)."""

MAX_HELD = 10_000
"""Events a rebuild holds back at most while their streams wait for a missing version, by
default (the setting ``followup_rebuild_max_held``)."""


class TooManyHeld(RuntimeError):
    """More events wait for missing versions than the bound allows."""

    def __init__(self, max_held: int, stream_id: str, missing: int) -> None:
        super().__init__(
            f"more than {max_held} events wait for a missing version of their stream "
            f"({stream_id} waits for version {missing}): raise --max-held "
            f"(BRANCHLINE_FOLLOWUP_REBUILD_MAX_HELD, now {max_held}) or rebuild with --from-stores"
        )
        self.stream_id = stream_id
        self.missing = missing


@dataclass
class _Gap(Generic[T]):
    """A stream waiting for version ``missing``; ``held``: its later events by version."""

    missing: int
    held: dict[int, list[T]] = field(default_factory=dict)


class StreamOrder(Generic[T]):
    """Releases items (``T``: the replayed messages) so that each stream's versions come in
    order; see the module's docstring."""

    def __init__(self, *, remembered: int = REMEMBERED_STREAMS, max_held: int = MAX_HELD) -> None:
        if remembered < 1 or max_held < 1:
            raise ValueError("remembered and max_held must be at least 1")
        self._remembered = remembered
        self._max_held = max_held
        self._last: OrderedDict[str, int] = OrderedDict()
        self._gaps: dict[str, _Gap[T]] = {}
        self._held = 0

    @property
    def held(self) -> int:
        """Events held back now."""
        return self._held

    def arrive(self, stream_id: str, version: int, item: T) -> list[T]:
        """``item`` (version ``version`` of ``stream_id``) arrived: the items released now, in
        the order to apply them (none while it waits for a missing version)."""
        gap = self._gaps.get(stream_id)
        if gap is not None:
            return self._into_gap(stream_id, gap, version, item)
        last = self._last.get(stream_id)
        if last is None or version <= last + 1:
            self._remember(stream_id, version if last is None else max(last, version))
            return [item]
        del self._last[stream_id]  # the gap remembers it now
        self._gaps[stream_id] = _Gap(missing=last + 1)
        self._hold(stream_id, self._gaps[stream_id], version, item)
        return []

    def rest(self) -> list[T]:
        """What is still held (the log ended): each stream's in version order, the streams in
        the order their gaps opened. Their streams are remembered as having been released."""
        released: list[T] = []
        for stream_id, gap in self._gaps.items():
            for version in sorted(gap.held):
                released.extend(gap.held[version])
            self._remember(stream_id, max(gap.held))
        self._gaps.clear()
        self._held = 0
        return released

    def _into_gap(self, stream_id: str, gap: _Gap[T], version: int, item: T) -> list[T]:
        if version < gap.missing:
            return [item]  # an older copy: applied as it comes (dropped by id)
        if version > gap.missing:
            self._hold(stream_id, gap, version, item)
            return []
        released = [item]
        following = version + 1
        while (copies := gap.held.pop(following, None)) is not None:
            released.extend(copies)
            self._held -= len(copies)
            following += 1
        if gap.held:
            gap.missing = following  # a further version is missing
        else:
            del self._gaps[stream_id]
            self._remember(stream_id, following - 1)
        return released

    def _hold(self, stream_id: str, gap: _Gap[T], version: int, item: T) -> None:
        if self._held >= self._max_held:
            raise TooManyHeld(self._max_held, stream_id, gap.missing)
        gap.held.setdefault(version, []).append(item)
        self._held += 1

    def _remember(self, stream_id: str, version: int) -> None:
        last = self._last
        if stream_id in last:
            last.move_to_end(stream_id)
        last[stream_id] = version
        if len(last) > self._remembered:
            last.popitem(last=False)

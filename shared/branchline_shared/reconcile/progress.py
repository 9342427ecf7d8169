"""Has a consumer reached an event on the broker? (#12) Pure: the self-check
(:mod:`.self_repair`) gathers the facts, this judges them.

An event not applied by a consumer is *owed* (re-queued by the self-check) when the consumer
will not get it by reading on. The grace rule judged that by time alone (published more than
``grace_s`` ago), so a consumer lagging further than the grace period behind had every event
it had not reached yet re-queued, every check: pure amplification load exactly when it is
behind. The broker knows better: the relay records where each published copy of an event
landed (partition, offset; eventstore migration 004) and the consumer group commits the
offset it has read up to, only after the events before it were applied or dead-lettered
(the audit consumer commits after its ledger transaction, the followup worker acks a batch
after its transaction). So:

- a copy the group's committed offset is past (``committed > offset``) was passed over;
- a copy still in the broker's log (``start <= offset < end``) that the committed offset
  is not past is ahead of the consumer: it will get it;
- anything else (a copy not published yet or published before positions were recorded,
  a partition whose offsets are unknown, an offset outside the log's bounds: the broker lost
  its log or retention deleted it) is not known from the broker: the grace rule judges.

An event is not reached when any copy is ahead (a re-queued copy may still be on its way
while the consumer passed the first one), owed when the consumer passed every copy, and
judged by the grace rule otherwise. The committed offsets must be read *before* asking the
consumer what it applied: a commit then proves an application the question can see.

Wrong answers cost differently: "owed" too early re-publishes an event the consumer skips by
id (what the grace rule did to every lagging event); "not reached" too long delays a repair.
So every doubt goes to the grace rule. An end offset reported too low (tansu 0.6 answers
ListOffsets(latest) with the base offset of the last batch, see
:mod:`branchline_shared.kafka.topic_reading`) only sends the last batch's copies to it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Copy:
    """One outbox row of an event, and where the broker put it if it was published with its
    position recorded (else ``partition`` and ``offset`` are None)."""

    topic: str
    partition: int | None
    offset: int | None


@dataclass(frozen=True)
class PartitionProgress:
    """A partition as the broker reports it for one consumer group."""

    committed: int | None
    """The group's committed offset (the next it reads); None if it never committed here (it
    starts from the log's start, ``auto_offset_reset=earliest``)."""
    start: int
    """The first offset the broker still holds."""
    end: int
    """The offset the next message will get (a lower bound of it on tansu)."""


Partitions = Mapping[tuple[str, int], PartitionProgress]


class Verdict(enum.Enum):
    OWED = "owed"
    """The consumer passed every copy of the event without applying it."""
    NOT_REACHED = "not reached"
    """A copy is in the broker's log ahead of the consumer's committed offset."""
    UNKNOWN = "unknown"
    """The broker cannot tell: the grace rule judges."""


def _copy_verdict(copy: Copy, partitions: Partitions) -> Verdict:
    if copy.partition is None or copy.offset is None:
        return Verdict.UNKNOWN
    progress = partitions.get((copy.topic, copy.partition))
    if progress is None:
        return Verdict.UNKNOWN
    if progress.committed is not None and progress.committed > copy.offset:
        return Verdict.OWED
    if progress.start <= copy.offset < progress.end:
        return Verdict.NOT_REACHED
    return Verdict.UNKNOWN  # not in the log the broker has now: lost, or deleted


def judge(copies: Iterable[Copy], partitions: Partitions) -> Verdict:
    """Whether the consumer owes the event published as ``copies`` (its outbox rows), by
    its group's progress on the broker (``partitions``)."""
    verdicts = {_copy_verdict(copy, partitions) for copy in copies}
    if not verdicts:
        return Verdict.UNKNOWN
    if Verdict.NOT_REACHED in verdicts:
        return Verdict.NOT_REACHED
    if Verdict.UNKNOWN in verdicts:
        return Verdict.UNKNOWN
    return Verdict.OWED

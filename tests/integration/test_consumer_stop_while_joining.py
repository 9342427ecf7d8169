"""A batch consumer (the followup worker's, the audit consumer's) stopped while it is joining
its group stops at once, not at its stop bound: neither a start waiting for its first
assignment nor a stop waiting for a rebalance that another member holds up keeps it. What it
committed stays committed, what it had not handled is delivered to the next member."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from branchline_shared.kafka.consuming import stop_batch_consumer
from branchline_shared.settings import BranchlineSettings
from tests.support.joining import (
    PARTITIONS,
    Group,
    HeldRevocation,
    JoinRequests,
    Member,
    fresh_group,
    until,
)
from tests.support.kafka import read_all
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# The stop's bound, twice the followup worker's default: the old stop waited all of it, and
# a prompt stop (a stop, a LeaveGroup and the connections closed: ~1 s) stays far under
# PROMPT_S on a machine however loaded (#12: a 5 s limit against a 30 s bound was a gap load
# could close).
BOUND_S = 60.0
PROMPT_S = 30.0


async def test_a_consumer_stopped_before_its_first_assignment_stops_at_once(
    settings: BranchlineSettings,
) -> None:
    async with fresh_group(settings) as group:
        await group.send(40)
        holder, held = group.member("holder"), HeldRevocation()
        await holder.start(group.topic, held)
        await eventually_received(holder, 40)
        with JoinRequests() as joins:
            group.start_consumer()  # its join makes the holder revoke, and it holds there
            await asyncio.wait_for(held.holding.wait(), 30)
            await joins.beyond(group.consumer_name, 0)  # its JoinGroup is at the broker
        assert group.task is not None
        stopping = time.monotonic()
        await stop_batch_consumer(group.consumer, group.task, timeout_s=BOUND_S)
        assert time.monotonic() - stopping < PROMPT_S
        assert not group.task.cancelled()  # it stopped by itself, not past the bound
        assert not group.consumer.started.is_set()
        assert not group.handled.records
        # the holder gets every partition back and reads all from the start: nothing committed
        holder.received.clear()
        held.released.set()
        await eventually_received(holder, 40)
        await holder.stop()


async def test_a_consumer_stopped_while_it_rejoins_stops_at_once_and_loses_nothing(
    settings: BranchlineSettings,
) -> None:
    async with fresh_group(settings) as group:
        await group.send(40)
        group.start_consumer()
        await group.handled.reach(40, within=30)
        holder, held = group.member("holder"), HeldRevocation()
        await holder.start(group.topic, held)  # its first join: the consumer gives it half
        await group.send(40, first=40)
        everything = set(await all_records(group))
        # the consumer handled its share, the holder read its own
        await until(lambda: group.handled.records | holder.received == everything)
        before = set(group.handled.records)
        # The consumer's commit follows its handler: waited for, not slept (a commit still
        # under way when the joiner's rebalance starts fails, and the check below with it).
        await eventually(lambda: covers(group, last_handled(before)))
        joiner = group.member("joiner")
        with JoinRequests() as joins:
            joining = asyncio.create_task(joiner.start(group.topic, HeldRevocation()))
            # the holder revokes and holds; the consumer sends its JoinGroup, held at the broker
            await asyncio.wait_for(held.holding.wait(), 30)
            await joins.beyond(group.consumer_name, 0)
        assert group.task is not None
        stopping = time.monotonic()
        await stop_batch_consumer(group.consumer, group.task, timeout_s=BOUND_S)
        assert time.monotonic() - stopping < PROMPT_S
        assert not group.task.cancelled()
        # Its commits stand, and it committed nothing it had not handled (the batch in hand
        # when the stop came is handled, and committed unless a rebalance took it).
        handled, offsets = group.handled.records, await committed(group)
        assert all(offsets.get(p, 0) >= o for p, o in last_handled(before).items())
        assert all(o <= last_handled(handled).get(p, 0) for p, o in offsets.items())
        # The rebalance goes on without it: the holder and the joiner share the partitions
        # from its commits on, so nothing it had not committed is lost.
        holder.received.clear()
        held.released.set()
        await asyncio.wait_for(joining, 30)
        uncommitted = {(p, o) for p, o in everything if o >= offsets.get(p, 0)}
        await until(lambda: uncommitted <= holder.received | joiner.received)
        assert len(everything) == 80
        await joiner.stop()
        await holder.stop()


async def eventually_received(member: Member, count: int) -> None:
    await until(lambda: len(member.received) >= count)


def last_handled(handled: set[tuple[int, int]]) -> dict[int, int]:
    """The offset to commit per partition after handling ``handled`` (contiguous from 0)."""
    ends: dict[int, int] = {}
    for partition, offset in handled:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


async def covers(group: Group, ends: dict[int, int]) -> bool:
    """Whether the group's committed offsets reach ``ends`` on every partition."""
    offsets = await committed(group)
    return all(offsets.get(p, 0) >= o for p, o in ends.items())


async def committed(group: Group) -> dict[int, int]:
    reader = AIOKafkaConsumer(
        bootstrap_servers=group.settings.kafka_bootstrap,
        group_id=group.group,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        offsets = {
            p: await reader.committed(TopicPartition(group.topic, p)) for p in range(PARTITIONS)
        }
    finally:
        await reader.stop()
    return {p: o for p, o in offsets.items() if o is not None}


async def all_records(group: Group) -> list[tuple[int, int]]:
    records = await read_all(group.settings.kafka_bootstrap, group.topic, expect=80)
    return [(r.partition, r.offset) for r in records]

"""How long a batch consumer's stop takes while it is joining its group (#12).

Starts the tansu broker and, ``--rounds`` times, stops a :class:`BatchConsumer` (the followup
worker's and the audit consumer's loop) with the followup worker's default bound (30 s) in
the two cases of ``tests/integration/test_consumer_stop_while_joining.py``: ``first``, before
its first assignment; ``rejoin``, in a rebalance after it handled and committed batches.
Another member holds the rebalance (its revocation callback has not returned), so the join
stays pending; the stop comes once the consumer's JoinGroup has been written to the broker
(``tests.support.joining.JoinRequests``, as the test waits; before Round 36 a fixed 0.5 s
sleep). Prints each stop's wall time and this process's CPU time over it.

    python -m bench.stop_while_joining [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from tests.support import joining
from tests.support.joining import Group, HeldRevocation, Member, fresh_group

from bench.probe_stack import tansu_broker
from branchline_shared.kafka.consuming import stop_batch_consumer
from branchline_shared.settings import CommonSettings

BOUND_S = 30.0


async def timed_stop(group: Group) -> tuple[float, float]:
    assert group.task is not None
    wall, cpu = time.monotonic(), time.process_time()
    await stop_batch_consumer(group.consumer, group.task, timeout_s=BOUND_S)
    return time.monotonic() - wall, time.process_time() - cpu


async def first(settings: CommonSettings) -> tuple[float, float]:
    async with fresh_group(settings) as group:
        await group.send(20)
        holder, held = group.member("holder"), HeldRevocation()
        await holder.start(group.topic, held)
        with joining.JoinRequests() as joins:
            group.start_consumer()
            async with asyncio.timeout(30):
                await held.holding.wait()
            await joins.beyond(group.consumer_name, 0)  # its JoinGroup is at the broker
        took = await timed_stop(group)
        held.released.set()
        await holder.stop()
        return took


async def rejoin(settings: CommonSettings) -> tuple[float, float]:
    async with fresh_group(settings) as group:
        await group.send(20)
        group.start_consumer()
        await group.handled.reach(20, within=30)
        holder, held = group.member("holder"), HeldRevocation()
        await holder.start(group.topic, held)
        await joining.until(lambda: bool(holder.consumer.assignment()))  # its first join done
        joiner: Member = group.member("joiner")
        with joining.JoinRequests() as joins:
            join_task = asyncio.create_task(joiner.start(group.topic, HeldRevocation()))
            async with asyncio.timeout(30):
                await held.holding.wait()
            await joins.beyond(group.consumer_name, 0)  # its rejoin is at the broker
        took = await timed_stop(group)
        held.released.set()
        async with asyncio.timeout(30):
            await join_task
        await joiner.stop()
        await holder.stop()
        return took


async def main(rounds: int) -> None:
    with tansu_broker(Path(tempfile.gettempdir()) / f"tansu-{os.getpid()}.log") as broker:
        settings = CommonSettings(kafka_bootstrap=broker.bootstrap)
        for n in range(rounds):
            for name, case in (("first", first), ("rejoin", rejoin)):
                wall, cpu = await case(settings)
                print(f"round {n} {name}: stop {wall:.2f} s wall, {cpu * 1000:.0f} ms CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))

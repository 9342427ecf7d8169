"""A busy batch consumer gathers fuller batches, an idle one is answered at once (#12).

With ``BRANCHLINE_KAFKA_FETCH_GATHER_BYTES`` the consumer's fetch after a round of at least
``BRANCHLINE_KAFKA_FETCH_GATHER_AFTER_RECORDS`` records asks the broker (the dev broker, tansu,
honours ``fetch_min_bytes`` within the fetch wait) for that many bytes: records sent one by one
while it is busy reach it several to a fetch instead of one by one. After a smaller round it
asks for one byte again, so a record reaching it idle is not held for the gathering."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.kafka.consuming import (
    BatchConsumer,
    DeadLetters,
    RawMessage,
    stop_batch_consumer,
)
from branchline_shared.settings import BranchlineSettings
from tests.support.stack import eventually, runtime_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 2_000  # the fetch wait: a gathering fetch short of its bytes is held this long
VALUE = b"x" * 500  # one record, about 570 bytes stored as a batch of its own
GATHER_BYTES = 4_000  # about seven such records
BUSY = 5  # records of a round from which the consumer gathers
FIRST = 6  # stored before the consumer starts: its first round is busy
ONE_BY_ONE = 21  # then sent one at a time, each acknowledged before the next


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    own = TansuBroker(free_port(), runtime_dir() / f"tansu-gather-{free_port()}.log")
    own.start()
    try:
        yield own
    finally:
        own.stop()


async def test_a_busy_consumer_gathers_and_an_idle_one_is_answered_at_once(
    broker: TansuBroker,
) -> None:
    topic = f"gather-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    loop = asyncio.get_running_loop()
    rounds: list[tuple[float, list[int]]] = []  # when each round was handed over, its offsets

    async def handle(raws: list[RawMessage]) -> None:
        rounds.append((loop.time(), [raw.offset for raw in raws]))

    empty_rounds = [0]  # rounds that brought nothing (each getmany waits 500 ms at most)

    def after_round(records: int) -> None:
        if records == 0:
            empty_rounds[0] += 1

    settings = BranchlineSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_fetch_max_wait_ms=WAIT_MS,
        kafka_fetch_gather_bytes=GATHER_BYTES,
        kafka_fetch_gather_after_records=BUSY,
    )
    name = f"gather-{uuid.uuid4().hex[:8]}"
    consumer = BatchConsumer(
        settings=settings,
        topics=[topic],
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        name=name,
        handle_raw=handle,
        dead_letters=DeadLetters(None, "unused", name),  # type: ignore[arg-type]
        max_records=500,
        after_round=after_round,
    )
    task: asyncio.Task[None] | None = None

    def read() -> int:
        return sum(len(offsets) for _, offsets in rounds)

    try:
        for _ in range(FIRST):
            await producer.send_and_wait(topic, VALUE, partition=0)
        task = asyncio.create_task(consumer.run())

        async def first_read() -> bool:
            assert not task.done(), task
            assert read() == FIRST, rounds
            return True

        await eventually(first_read, within=30, interval=0.05)
        assert [len(offsets) for _, offsets in rounds] == [FIRST]  # a busy round

        for _ in range(ONE_BY_ONE):
            await producer.send_and_wait(topic, VALUE, partition=0)

        async def all_read() -> bool:
            assert read() == FIRST + ONE_BY_ONE, rounds
            return True

        await eventually(all_read, within=30, interval=0.05)
        busy = [len(offsets) for _, offsets in rounds[1:]]
        # gathered: every round but the last (what was left when the sending stopped, handed
        # over at the fetch wait) brought about GATHER_BYTES; one byte asked: mostly ones
        assert len(busy) <= ONE_BY_ONE // 6 + 2, busy
        # (the first may have been asked for before the busy round was seen)
        assert min(busy[1:-1], default=BUSY) >= BUSY, busy

        # Rounds that bring nothing make the next fetch ask for one byte again; once a
        # gathering fetch still under way has ended (the fetch wait and some), a record
        # reaching the consumer idle is handed over without the gathering's full wait (the
        # broker looks again at halving intervals of a held fetch: at most half the wait)
        empty_before = empty_rounds[0]

        async def idle() -> bool:
            assert empty_rounds[0] >= empty_before + WAIT_MS // 500 + 2, empty_rounds
            return True

        await eventually(idle, within=30, interval=0.05)
        before = len(rounds)
        sent = loop.time()
        await producer.send_and_wait(topic, VALUE, partition=0)

        async def idle_read() -> bool:
            assert len(rounds) == before + 1, rounds
            return True

        await eventually(idle_read, within=30, interval=0.01)
        assert rounds[-1][1] == [FIRST + ONE_BY_ONE]
        assert rounds[-1][0] - sent < 0.5 * WAIT_MS / 1000 + 0.4
    finally:
        await producer.stop()
        if task is not None:
            await stop_batch_consumer(consumer, task, timeout_s=10)

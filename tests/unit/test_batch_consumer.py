"""The shared batch consumer's loop (ADR-0015), against a stand-in for aiokafka's consumer:
offsets committed only after the handler returned and only for partitions still held, a
rebalance that failed a commit not retried for ever, a bounded stop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import REGISTRY

from branchline_shared.kafka import consuming
from branchline_shared.kafka.consuming import (
    FETCH_WAIT_CEILING_MS,
    STARVED_LAG,
    BatchConsumer,
    FetchWait,
    RawMessage,
    partition_marks,
    set_fetch_wait,
    still_held,
    stop_batch_consumer,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

TP0 = TopicPartition("events", 0)
TP1 = TopicPartition("events", 1)
LONG = 10_000  # records the consumer is behind on a long log


def record(tp: TopicPartition, offset: int) -> Any:
    return SimpleNamespace(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        key=b"k",
        value=b"{}",
        headers=[("source", b"intake")],
    )


class FakeKafka:
    """Hands out ``fetches`` one per ``getmany`` (then nothing), records what is committed
    and in which order against what the handler saw."""

    def __init__(self, fetches: list[dict[TopicPartition, list[Any]]], log: list[str]) -> None:
        self.fetches = fetches
        self.log = log
        self.assigned = {TP0, TP1}
        self.max_records: list[int] = []
        self.commit_error: Exception | None = None
        self.listener: Any = None
        self.stopped = False
        self.committed = asyncio.Event()
        self.highwaters: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.position_hangs: set[TopicPartition] = set()
        # a rebalance that takes these partitions while position(key) is awaited
        self.revoked_during_position: dict[TopicPartition, set[TopicPartition]] = {}
        self._fetcher = SimpleNamespace(_fetch_max_wait_ms=50)  # aiokafka's, once started

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.max_records.append(max_records)
        if self.fetches:
            return self.fetches.pop(0)
        await asyncio.sleep(0.01)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.log.append(f"commit {sorted((tp.partition, o) for tp, o in offsets.items())}")
        self.committed.set()

    async def position(self, tp: TopicPartition) -> int:
        # as aiokafka 0.14: unassigned raises; during a rebalance it waits for an assignment
        if tp in self.position_hangs:
            await asyncio.Event().wait()
        if tp not in self.assigned:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        position = self.positions.get(tp, 0)
        self.assigned -= self.revoked_during_position.pop(tp, set())
        return position

    def highwater(self, tp: TopicPartition) -> int | None:
        assert tp in self.assigned, "Partition is not assigned"  # aiokafka 0.14's own check
        return self.highwaters.get(tp)


def consumer_over(
    kafka: object,
    handle_raw: Callable[[list[RawMessage]], Any],
    max_records: int = 3,
    after_round: Callable[[int], None] | None = None,
    log_end_check_s: float = 5.0,
    **more: Any,
) -> BatchConsumer:
    settings: Any = SimpleNamespace(
        kafka_bootstrap="127.0.0.1:1",
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=200,
        kafka_fetch_max_wait_ms=50,
    )
    consumer = BatchConsumer(
        settings=settings,
        topics=["events"],
        group_id="group",
        name="test-consumer",
        handle_raw=handle_raw,
        dead_letters=None,  # type: ignore[arg-type]
        max_records=max_records,
        after_round=after_round,
        log_end_check_s=log_end_check_s,
        **more,
    )
    consumer._consumer = lambda: kafka  # type: ignore[assignment, method-assign, return-value]
    return consumer


async def run_until_committed(consumer: BatchConsumer, kafka: FakeKafka) -> None:
    task = asyncio.create_task(consumer.run())
    await kafka.committed.wait()
    await stop_batch_consumer(consumer, task, timeout_s=2)
    assert task.done()
    assert task.exception() is None


async def test_a_fetch_is_handed_over_whole_and_committed_after_the_handler_returned() -> None:
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4), record(TP0, 5)], TP1: [record(TP1, 9)]}], log)

    async def handle(raws: list[RawMessage]) -> None:
        log.append(f"handled {[(r.partition, r.offset) for r in raws]}")

    await run_until_committed(consumer_over(kafka, handle, max_records=7), kafka)

    assert log == ["handled [(0, 4), (0, 5), (1, 9)]", "commit [(0, 6), (1, 10)]"]
    assert set(kafka.max_records) == {7}  # the batch bound is the fetch's
    assert kafka.stopped


async def test_behind_a_fetch_takes_up_to_the_larger_bound_until_one_brings_less() -> None:
    # #12, Round 27: a worker behind works off its backlog in fewer, larger transactions; a
    # fetch of the usual bound or more says it is behind, a shorter one that it caught up
    def fetch(n: int, first: int) -> dict[TopicPartition, list[Any]]:
        return {TP0: [record(TP0, first + i) for i in range(n)]}

    log: list[str] = []
    sizes = [2, 3, 7, 5, 2, 3, 1]  # short, full, behind (full), behind, short, full, short
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    kafka = FakeKafka([fetch(n, first) for n, first in zip(sizes, starts, strict=True)], log)
    handled: list[int] = []
    done = asyncio.Event()

    async def handle(raws: list[RawMessage]) -> None:
        handled.append(len(raws))
        if len(handled) == len(sizes):
            done.set()

    consumer = consumer_over(kafka, handle, max_records=3, max_records_behind=7)
    task = asyncio.create_task(consumer.run())
    await done.wait()
    await stop_batch_consumer(consumer, task, timeout_s=2)

    assert handled == sizes
    assert kafka.max_records[: len(sizes) + 1] == [3, 3, 7, 7, 7, 3, 7, 3]


async def test_without_a_bound_for_behind_every_fetch_takes_the_usual_one() -> None:
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, i) for i in range(3)]}], log)

    async def handle(raws: list[RawMessage]) -> None:
        log.append("handled")

    await run_until_committed(consumer_over(kafka, handle, max_records=3), kafka)

    assert set(kafka.max_records) == {3}


async def test_each_round_s_records_are_told_after_its_commit_empty_fetches_too() -> None:
    # the allocator trim's hook (allocator_trim.py): after the batch is durable, never inside
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4), record(TP0, 5)], TP1: [record(TP1, 9)]}], log)
    idle = asyncio.Event()

    async def handle(raws: list[RawMessage]) -> None:
        log.append("handled")

    def after_round(records: int) -> None:
        log.append(f"round {records}")
        if records == 0:
            idle.set()

    consumer = consumer_over(kafka, handle, max_records=7, after_round=after_round)
    task = asyncio.create_task(consumer.run())
    await idle.wait()
    await stop_batch_consumer(consumer, task, timeout_s=2)

    assert log[:4] == ["handled", "commit [(0, 6), (1, 10)]", "round 3", "round 0"]
    assert set(log[3:]) == {"round 0"}


async def test_a_partition_revoked_under_the_batch_is_not_committed() -> None:
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4)], TP1: [record(TP1, 9)]}], log)

    async def handle(raws: list[RawMessage]) -> None:
        # a rebalance takes partition 1 and gives it back while the batch is applied: another
        # member may have read it meanwhile, so our position there is not ours to commit
        kafka.listener.on_partitions_revoked({TP1})
        kafka.listener.on_partitions_assigned({TP0, TP1})
        log.append("handled")

    await run_until_committed(consumer_over(kafka, handle), kafka)

    assert log == ["handled", "commit [(0, 5)]"]


async def test_a_commit_the_rebalance_failed_is_dropped_not_retried_for_ever() -> None:
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4)]}, {TP0: [record(TP0, 5)]}], log)
    kafka.commit_error = CommitFailedError()
    handled: list[int] = []

    async def handle(raws: list[RawMessage]) -> None:
        handled.extend(r.offset for r in raws)
        if len(handled) == 2:
            kafka.commit_error = None

    await run_until_committed(consumer_over(kafka, handle), kafka)

    assert handled == [4, 5]  # the consumer went on to the next fetch
    assert log == ["commit [(0, 6)]"]


def test_only_assigned_partitions_not_revoked_are_held() -> None:
    offsets = {TP0: 5, TP1: 10}
    assert still_held(offsets, {TP0, TP1}, set()) == offsets
    assert still_held(offsets, {TP0}, set()) == {TP0: 5}
    assert still_held(offsets, {TP0, TP1}, {TP0}) == {TP1: 10}
    assert still_held(offsets, set(), set()) == {}


async def test_a_stop_finishes_the_batch_in_hand_and_commits_it() -> None:
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4)]}], log)
    entered, release = asyncio.Event(), asyncio.Event()

    async def handle(raws: list[RawMessage]) -> None:
        entered.set()
        await release.wait()
        log.append("handled")

    consumer = consumer_over(kafka, handle)
    task = asyncio.create_task(consumer.run())
    await entered.wait()
    stopping = asyncio.create_task(stop_batch_consumer(consumer, task, timeout_s=5))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the batch in hand is still being applied
    release.set()
    await stopping

    assert log == ["handled", "commit [(0, 5)]"]
    assert task.done()
    assert not task.cancelled()


async def test_a_stop_that_overruns_its_bound_cancels_the_batch_uncommitted() -> None:
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4)]}], log)
    entered = asyncio.Event()

    async def never_finishes(raws: list[RawMessage]) -> None:
        entered.set()
        await asyncio.Event().wait()

    consumer = consumer_over(kafka, never_finishes)
    task = asyncio.create_task(consumer.run())
    await entered.wait()
    await asyncio.wait_for(stop_batch_consumer(consumer, task, timeout_s=0.2), 2)

    assert task.cancelled()
    assert log == []  # nothing committed: redelivered, its ids decide (ADR-0003)
    assert kafka.stopped  # the consumer still left its group


async def test_a_batch_still_in_hand_after_the_stops_patience_is_cancelled_uncommitted() -> None:
    # its transaction waits on a lock held elsewhere, say: the stop does not wait for its bound
    # (#12, Round 35); the batch is cancelled, not committed, and the consumer ends by itself
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4)]}], log)
    entered = asyncio.Event()
    cancelled: list[bool] = []

    async def waits_on_a_lock(raws: list[RawMessage]) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    consumer = consumer_over(kafka, waits_on_a_lock, stop_patience_s=0.05)
    task = asyncio.create_task(consumer.run())
    await entered.wait()
    # a bound beyond the test's timeout: a stop that waited for it fails the test
    await stop_batch_consumer(consumer, task, timeout_s=60)

    assert cancelled == [True]
    assert task.done()
    assert not task.cancelled()  # it ended by itself, not by the bound's cancel
    assert task.exception() is None
    assert log == []  # nothing committed: redelivered, its ids decide (ADR-0003)
    assert kafka.stopped


async def test_a_stop_whose_cancel_is_lost_cancels_again_until_the_consumer_ends() -> None:
    # Python 3.11's wait_for drops a cancel that comes with a result: a consumer may lose one
    log: list[str] = []
    kafka = FakeKafka([{TP0: [record(TP0, 4)]}], log)
    entered = asyncio.Event()

    async def loses_the_first_cancel(raws: list[RawMessage]) -> None:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await asyncio.Event().wait()

    # The consumer's own patience past the bound: its cancel of the batch would be a second
    # one, and the stop's re-cancel would go unproven (the test passed with one cancel).
    consumer = consumer_over(kafka, loses_the_first_cancel, stop_patience_s=60)
    task = asyncio.create_task(consumer.run())
    await entered.wait()
    # The bound only has to pass (the batch never ends by itself) and leave the second
    # cancel, one CANCEL_AGAIN_S (1 s) after the first, inside it: 3 s was 1.5 s waited for
    # nothing (#12).
    await asyncio.wait_for(stop_batch_consumer(consumer, task, timeout_s=1.5), 10)

    assert task.cancelled()
    assert log == []
    assert kafka.stopped


async def test_a_stop_before_the_first_assignment_abandons_the_start_at_once() -> None:
    # aiokafka's start waits for the first assignment, which a held rebalance may never give
    kafka = FakeKafka([{TP0: [record(TP0, 4)]}], [])
    starting = asyncio.Event()

    async def never_assigned() -> None:
        starting.set()
        await asyncio.Event().wait()

    kafka.start = never_assigned  # type: ignore[method-assign]
    handled: list[RawMessage] = []

    async def handle(raws: list[RawMessage]) -> None:
        handled.extend(raws)

    consumer = consumer_over(kafka, handle)
    task = asyncio.create_task(consumer.run())
    await starting.wait()
    await asyncio.wait_for(stop_batch_consumer(consumer, task, timeout_s=5), 1)

    assert not task.cancelled()  # it returned by itself, well before the bound
    assert task.exception() is None
    assert not consumer.started.is_set()
    assert handled == []
    assert kafka.stopped


async def test_a_start_that_fails_for_good_still_fails_the_run() -> None:
    kafka = FakeKafka([], [])

    async def refused() -> None:
        raise RuntimeError("not transient")

    kafka.start = refused  # type: ignore[method-assign]
    consumer = consumer_over(kafka, lambda raws: asyncio.sleep(0))
    with pytest.raises(RuntimeError, match="not transient"):
        await consumer.run()
    assert kafka.stopped


def test_a_consumer_takes_exactly_one_handler() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BatchConsumer(
            settings=None,  # type: ignore[arg-type]
            topics=[],
            group_id="g",
            name="n",
            dead_letters=None,  # type: ignore[arg-type]
        )


async def test_the_consumer_fetches_with_the_configured_wait() -> None:
    # #12: the followup worker's and the audit consumer's fetch wait is the setting's.
    consumer = consumer_over(FakeKafka([], []), lambda raws: None)
    del consumer._consumer  # the real factory again
    consumer._settings.kafka_fetch_max_wait_ms = 20  # type: ignore[misc]
    kafka = consumer._consumer()
    try:
        assert kafka._fetch_max_wait_ms == 20
        assert kafka._fetch_min_bytes == 1  # answered as soon as one record is there
    finally:
        await kafka.stop()


def test_the_fetch_wait_doubles_after_rounds_that_bring_nothing_although_records_are_there() -> (
    None
):
    # #12: tansu's memory store answers nothing once listing a long partition outlasts the wait
    wait = FetchWait(50, patience=2)
    assert not wait.after_round(records=0, lag=LONG)
    assert wait.after_round(records=0, lag=LONG)
    assert wait.ms == 100
    assert not wait.after_round(records=0, lag=LONG)  # patience again before the next
    assert wait.after_round(records=0, lag=LONG)
    assert wait.ms == 200


def test_the_fetch_wait_stays_when_rounds_bring_records_or_the_consumer_is_at_the_end() -> None:
    wait = FetchWait(50, patience=2)
    for records, lag in [(0, LONG), (3, 0), (0, LONG), (0, 0)] * 5:
        assert not wait.after_round(records=records, lag=lag)
    assert wait.ms == 50  # at rest (at the end) or reading: never raised
    wait.after_round(records=0, lag=LONG)
    wait.after_round(records=0, lag=LONG)
    assert wait.ms == 100
    for _ in range(10):
        wait.after_round(records=5, lag=0)
    assert wait.ms == 100  # kept while the consumer has not stayed caught up for long


def test_a_raised_wait_is_tried_lower_once_the_consumer_stayed_caught_up() -> None:
    # #12: on tansu a raised wait delays what reaches a consumer at its log end by up to half
    # of it per event; a consumer that caught up is given a lower wait again, one step at once
    wait = FetchWait(50, patience=2, settle=5)
    for _ in range(4):  # 50 -> 100 -> 200
        wait.after_round(records=0, lag=LONG)
    assert wait.ms == 200
    for _ in range(4):
        assert not wait.after_round(records=0, lag=0)
    assert not wait.after_round(records=10, lag=LONG)  # behind again: start counting again
    for _ in range(4):
        assert not wait.after_round(records=0, lag=0)
    assert wait.after_round(records=0, lag=0)
    assert wait.ms == 100
    for _ in range(5):
        wait.after_round(records=3, lag=0)
    assert wait.ms == 50
    for _ in range(50):
        assert not wait.after_round(records=0, lag=0)
    assert wait.ms == 50  # never below the configured wait


def test_a_wait_that_starves_the_consumer_again_after_a_step_down_is_not_tried_again() -> None:
    # hysteresis: a log that only grows must not stall the consumer every ``settle`` rounds
    wait = FetchWait(50, patience=2, settle=5)
    for _ in range(4):
        wait.after_round(records=0, lag=LONG)
    assert wait.ms == 200
    for _ in range(5):
        wait.after_round(records=0, lag=0)
    assert wait.ms == 100  # tried once more
    assert not wait.after_round(records=0, lag=LONG)
    assert wait.after_round(records=0, lag=LONG)  # it starves again: back up
    assert wait.ms == 200
    for _ in range(100):
        assert not wait.after_round(records=0, lag=0)
    assert wait.ms == 200  # 100 is not tried again
    wait.reset()  # the broker lost its log: a short log again, everything learnt forgotten
    assert wait.ms == 50
    assert not wait.raised


def test_a_raised_wait_above_a_refused_one_still_comes_down_to_it() -> None:
    wait = FetchWait(50, patience=1, settle=2)
    wait.after_round(records=0, lag=LONG)  # 100
    wait.after_round(records=0, lag=0)
    wait.after_round(records=0, lag=0)  # 50 tried again
    wait.after_round(records=0, lag=LONG)  # starves: 100, and 50 refused
    wait.after_round(records=0, lag=LONG)  # a heavier spell: 200
    assert wait.ms == 200
    for _ in range(10):
        wait.after_round(records=0, lag=0)
    assert wait.ms == 100  # down to the lowest wait not refused, and no further


def test_rounds_that_leave_the_consumer_behind_with_a_few_records_count_as_starved() -> None:
    # On a long log a wait just long enough answers now and then: a consumer fed so stays
    # behind for good unless the starved rounds between the answers still count.
    wait = FetchWait(50, patience=2)
    assert not wait.after_round(records=0, lag=LONG)
    assert wait.starving
    assert not wait.after_round(records=500, lag=LONG)  # a backlog read: not starved
    assert wait.after_round(records=4, lag=LONG)  # a few records, still behind: starved
    assert wait.ms == 100
    assert not wait.after_round(records=0, lag=LONG)
    assert not wait.after_round(records=4, lag=0)  # caught up: forgiven
    assert not wait.starving
    assert not wait.after_round(records=0, lag=LONG)
    assert wait.ms == 100


def test_a_consumer_a_few_records_behind_after_meagre_rounds_is_keeping_up_not_starved() -> None:
    # #12: under a steady load the fetcher reads ahead while a batch is handled, so a consumer
    # keeping up is a fetch's few records behind after most rounds; counted as starved, that
    # raised the followup worker's wait to 800 ms in 20 s at 400 events/s on a short log
    wait = FetchWait(50, patience=2)
    for _ in range(100):
        assert not wait.after_round(records=12, lag=STARVED_LAG - 1)
    assert wait.ms == 50
    assert not wait.after_round(records=12, lag=STARVED_LAG)
    assert wait.after_round(records=12, lag=STARVED_LAG)  # far behind and fed little: starved
    assert wait.ms == 100


def test_a_long_fetch_wait_needs_four_times_itself_of_starved_rounds_to_be_raised() -> None:
    # a fetch held at the log end, cut when a record comes and tried again, is not a stall
    wait = FetchWait(1600, patience=2, round_ms=500)
    assert wait.rounds_needed() == 13
    for _ in range(12):
        assert not wait.after_round(records=0, lag=LONG)
    assert wait.after_round(records=0, lag=LONG)
    assert wait.ms == 3200
    assert FetchWait(50, patience=2, round_ms=500).rounds_needed() == 2


def test_the_fetch_wait_never_passes_its_ceiling() -> None:
    wait = FetchWait(50, patience=1)
    for _ in range(1000):
        wait.after_round(records=0, lag=LONG)
    assert wait.ms == FETCH_WAIT_CEILING_MS
    assert FetchWait(5000).ceiling_ms == 5000
    with pytest.raises(ValueError, match="at least"):
        FetchWait(0)


async def test_the_consumer_raises_its_fetch_wait_when_the_broker_starves_it() -> None:
    kafka = FakeKafka([], [])
    kafka.highwaters = {TP0: 30_000, TP1: 7}
    kafka.positions = {TP0: 12, TP1: 7}  # records beyond the position, none delivered
    waits: list[int] = []
    four = asyncio.Event()

    def after_round(records: int) -> None:
        waits.append(kafka._fetcher._fetch_max_wait_ms)
        if len(waits) == 4:
            four.set()

    consumer = consumer_over(kafka, lambda raws: asyncio.sleep(0), after_round=after_round)
    task = asyncio.create_task(consumer.run())
    await four.wait()
    await stop_batch_consumer(consumer, task, timeout_s=2)
    assert waits[:4] == [50, 100, 100, 200]  # doubled after every second starved round


async def test_the_consumer_lowers_a_raised_wait_once_it_caught_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consuming, "SETTLE_ROUNDS", 3)
    kafka = FakeKafka([], [])
    kafka.highwaters = {TP0: 30_000, TP1: 7}
    kafka.positions = {TP0: 12, TP1: 7}
    waits: list[int] = []
    enough = asyncio.Event()

    def after_round(records: int) -> None:
        waits.append(kafka._fetcher._fetch_max_wait_ms)
        if len(waits) == 4:
            kafka.positions = {TP0: 30_000, TP1: 7}  # caught up
        if len(waits) == 12:
            enough.set()

    consumer = consumer_over(kafka, lambda raws: asyncio.sleep(0), after_round=after_round)
    before = REGISTRY.get_sample_value(
        "branchline_consumer_fetch_wait_raises_total", {"consumer": "test-consumer"}
    )
    task = asyncio.create_task(consumer.run())
    await enough.wait()
    await stop_batch_consumer(consumer, task, timeout_s=2)
    assert waits[:12] == [50, 100, 100, 200, 200, 200, 100, 100, 100, 50, 50, 50]
    assert (
        REGISTRY.get_sample_value(
            "branchline_consumer_fetch_wait_raises_total", {"consumer": "test-consumer"}
        )
        == (before or 0) + 2
    )
    assert (
        REGISTRY.get_sample_value(
            "branchline_consumer_fetch_wait_ms", {"consumer": "test-consumer"}
        )
        == 50
    )


async def test_a_consumer_at_the_end_of_its_log_keeps_the_configured_fetch_wait() -> None:
    kafka = FakeKafka([], [])
    kafka.highwaters = {TP0: 30_000, TP1: 7}
    kafka.positions = {TP0: 30_000, TP1: 7}
    rounds = asyncio.Event()
    counted: list[int] = []

    def after_round(records: int) -> None:
        counted.append(records)
        if len(counted) >= 20:
            rounds.set()

    consumer = consumer_over(kafka, lambda raws: asyncio.sleep(0), after_round=after_round)
    task = asyncio.create_task(consumer.run())
    await rounds.wait()
    await stop_batch_consumer(consumer, task, timeout_s=2)
    assert kafka._fetcher._fetch_max_wait_ms == 50


async def test_aiokafka_s_fetcher_reads_the_wait_we_change_for_each_request() -> None:
    # set_fetch_wait changes a private attribute of aiokafka 0.14 (pinned): it must still be
    # the one each FetchRequest is built from, and a consumer without a fetcher is told apart
    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher._get_actions_per_node)
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    try:
        assert not set_fetch_wait(consumer, 100)  # not started: no fetcher yet
        consumer._fetcher = SimpleNamespace(_fetch_max_wait_ms=50)
        assert set_fetch_wait(consumer, 100)
        assert consumer._fetcher._fetch_max_wait_ms == 100
    finally:
        consumer._fetcher = None
        await consumer.stop()


async def test_marks_leave_out_a_partition_a_rebalance_takes_while_they_are_read() -> None:
    # #12: aiokafka's highwater() asserts the partition is assigned (an AssertionError, not a
    # KafkaError): a rebalance between assignment() and it must not end the consumer
    kafka = FakeKafka([], [])
    kafka.highwaters = {TP0: 30, TP1: 7}
    kafka.positions = {TP0: 12, TP1: 7}
    first = min(kafka.assignment(), key=str)  # the order of a set: take whichever comes
    second = ({TP0, TP1} - {first}).pop()
    kafka.assignment = lambda: [first, second]  # type: ignore[method-assign]
    kafka.revoked_during_position = {first: {first, second}}
    assert await partition_marks(kafka) == {}  # type: ignore[arg-type]
    kafka.assigned = {TP0, TP1}
    kafka.revoked_during_position = {}
    assert await partition_marks(kafka) == {TP0: (12, 30), TP1: (7, 7)}  # type: ignore[arg-type]


async def test_marks_do_not_wait_for_a_rebalance_to_end() -> None:
    # aiokafka's position() waits for the next assignment while the group has none
    kafka = FakeKafka([], [])
    kafka.highwaters = {TP0: 30, TP1: 7}
    kafka.positions = {TP0: 12, TP1: 7}
    kafka.position_hangs = {TP0}
    # a hang guard, not a timing: the old code waited for the rebalance (here: for ever)
    async with asyncio.timeout(10):
        marks = await partition_marks(kafka, within_s=0.2)  # type: ignore[arg-type]
    assert TP0 not in marks


async def test_a_rebalance_under_the_consumer_s_looks_at_its_partitions_never_ends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The starved-round look and the log-end check (every round here) meet a partition taken
    # between assignment() and highwater(), then a position() that waits for the rebalance
    monkeypatch.setattr(consuming, "MARKS_WITHIN_S", 0.05)
    kafka = FakeKafka([], [])
    kafka.highwaters = {TP0: 30_000, TP1: 7}
    kafka.positions = {TP0: 12, TP1: 7}
    kafka.assignment = lambda: [TP0, TP1]  # type: ignore[method-assign]
    rounds: list[int] = []
    enough = asyncio.Event()

    def after_round(records: int) -> None:
        rounds.append(records)
        if len(rounds) == 1:
            kafka.revoked_during_position = {TP0: {TP1}}
        if len(rounds) == 3:
            kafka.assigned = {TP0, TP1}
            kafka.position_hangs = {TP0, TP1}
        if len(rounds) >= 6:
            enough.set()

    consumer = consumer_over(
        kafka, lambda raws: asyncio.sleep(0), after_round=after_round, log_end_check_s=0
    )
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(enough.wait(), 5)
    assert not task.done(), task
    await stop_batch_consumer(consumer, task, timeout_s=2)
    assert task.exception() is None


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (asyncpg.InterfaceError("connection is closed"), True),
        (asyncpg.InterfaceError("pool is closing"), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("lost"), True),
        (OSError("unreachable"), True),
        (asyncpg_base.DataError("a value its codec refuses"), False),
        (asyncpg.ClientConfigurationError("bad option"), False),
        (asyncpg.UnsupportedServerFeatureError("no such feature"), False),
        (asyncpg.UniqueViolationError("duplicate"), False),
        (ValueError("a bug"), False),
    ],
)
async def test_only_faults_that_may_pass_are_retried(error: Exception, transient: bool) -> None:
    """A client-side refusal of a value is decided by the event: retried, it would hold the
    consumer for ever instead of dead-lettering the event; a lost connection may come back."""
    assert consuming.is_transient(error) is transient
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        return "done"

    if transient:
        assert await consuming.retry_transient(work, consumer="t", max_backoff_s=0.01) == "done"
        assert calls == 2
    else:
        with pytest.raises(type(error)):
            await consuming.retry_transient(work, consumer="t")
        assert calls == 1


async def test_a_look_at_the_partitions_sets_one_timer_not_one_per_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # #12 (round 21): the consumers look after every meagre round, i.e. every round of a
    # steady load; a timer set and cancelled per partition held was the look's main cost
    kafka = FakeKafka([], [])
    held = [TopicPartition("events", p) for p in range(8)]
    kafka.assigned = set(held)
    kafka.highwaters = {tp: 30 for tp in held}
    kafka.positions = {tp: 12 for tp in held}
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_at = loop.call_at

    def counted(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        timers.append(when)
        return call_at(when, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counted)
    marks = await partition_marks(kafka)  # type: ignore[arg-type]
    assert marks == {tp: (12, 30) for tp in held}
    assert len(timers) <= 1

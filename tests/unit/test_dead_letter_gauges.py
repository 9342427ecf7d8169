"""The dead-letter gauges read only what is new each round, keep a bounded set of pending
letters and re-check them against what the consumer applied (#12): over a stand-in for the
paged topic reader (offsets, ends and a topic that goes back), so every record read counts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from branchline_shared.kafka import dead_letter_log
from branchline_shared.kafka.dead_letter_log import OLDEST_AGE, PENDING, DeadLetterGauges

TOPIC = "dlq.test"
START = datetime(2026, 1, 1, tzinfo=UTC)


class Topic:
    """One partition of dead letters, a record per event id, a minute apart."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    def add(self, count: int, *, anonymous: bool = False) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        for event_id in ids:
            offset = len(self.records)
            at = START + timedelta(minutes=offset)
            headers = [] if anonymous else [("event_id", str(event_id).encode())]
            self.records.append(
                ConsumerRecord(
                    TOPIC,
                    0,
                    offset,
                    int(at.timestamp() * 1000),
                    0,
                    None,
                    b"{}",
                    None,
                    0,
                    0,
                    headers,
                )
            )
        return ids

    async def pages(
        self,
        _bootstrap: str,
        _topics: Sequence[str],
        *,
        page: int,
        start: Mapping[TopicPartition, int] | None = None,
        ends: dict[TopicPartition, int] | None = None,
        **_: Any,
    ) -> AsyncGenerator[list[ConsumerRecord[bytes, bytes]]]:
        tp = TopicPartition(TOPIC, 0)
        end = len(self.records)
        if ends is not None:
            ends[tp] = end
        first = (start or {}).get(tp, 0)
        if first > end:  # out of range: the broker's reset to the earliest
            first = 0
        for at in range(first, end, page):
            yield self.records[at : min(at + page, end)]


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Topic:
    made = Topic()
    monkeypatch.setattr(dead_letter_log, "topic_pages", made.pages)
    return made


class Applied:
    def __init__(self) -> None:
        self.ids: set[uuid.UUID] = set()
        self.asked: list[int] = []

    async def __call__(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        self.asked.append(len(ids))
        return self.ids & set(ids)


def gauges(applied: Applied, **kwargs: Any) -> DeadLetterGauges:
    return DeadLetterGauges("broker", "test-consumer", TOPIC, applied, page=3, **kwargs)


def shown() -> tuple[float, float]:
    return (
        PENDING.labels("test-consumer")._value.get(),  # type: ignore[attr-defined]
        OLDEST_AGE.labels("test-consumer")._value.get(),  # type: ignore[attr-defined]
    )


async def test_a_round_reads_only_the_records_written_since_the_last(topic: Topic) -> None:
    applied = Applied()
    watch = gauges(applied)
    topic.add(7)
    await watch.round()
    assert (watch.records_read, watch.pending) == (7, 7)
    await watch.round()
    assert (watch.records_read, watch.pending) == (0, 7)
    topic.add(2)
    await watch.round()
    assert (watch.records_read, watch.pending) == (2, 9)
    assert shown()[0] == 9


async def test_the_pending_count_and_oldest_age_follow_a_replay(topic: Topic) -> None:
    applied = Applied()
    watch = gauges(applied, recheck_page=2)
    ids = topic.add(5)
    await watch.round()
    applied.ids |= {ids[0], ids[3]}
    await watch.round()
    assert watch.pending == 3
    assert watch.oldest == START + timedelta(minutes=1)
    assert max(applied.asked) <= 3  # a page read, or a page of kept ids re-checked
    applied.ids |= set(ids)
    await watch.round()
    assert (watch.pending, watch.oldest) == (0, None)
    assert shown() == (0, 0)


async def test_past_the_cap_letters_are_counted_and_the_oldest_stays_right(
    topic: Topic,
) -> None:
    applied = Applied()
    watch = gauges(applied, cap=2)
    ids = topic.add(6)
    topic.add(1, anonymous=True)
    await watch.round()
    assert watch.pending == 7
    assert watch.oldest == START
    assert len(watch._waiting) == 2  # what it keeps is bounded
    applied.ids |= {ids[0]}  # a kept one replayed while some are past the cap: read again
    await watch.round()
    assert watch.pending == 6
    assert watch.oldest == START + timedelta(minutes=1)
    assert watch.records_read == 7
    assert len(watch._waiting) == 2


async def test_a_topic_recreated_with_fewer_records_is_read_again(topic: Topic) -> None:
    applied = Applied()
    watch = gauges(applied)
    topic.add(6)
    await watch.round()
    topic.records.clear()
    topic.add(2)
    await watch.round()
    assert watch.pending == 2
    topic.records.clear()
    await watch.round()
    assert (watch.pending, watch.oldest) == (0, None)

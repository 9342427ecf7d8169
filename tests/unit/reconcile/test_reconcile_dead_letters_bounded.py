"""The paged reconcile asks a consumer's dead-letter topic only about the events it did not
apply, a bounded number at a time, and keeps only the answer: not every id the topic holds
(#12). A store stand-in (its log a page at a time, no streams), a consumer stand-in and a
dead-letter topic stand-in holding many more ids than the log misses."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.reconcile import running
from branchline_shared.reconcile.compare import AppliedEvent, StoreEvent
from branchline_shared.reconcile.running import ConsumerSource, StoreSource, reconcile

LOG = [
    StoreEvent(
        "intake",
        uuid.UUID(int=n),
        LogPosition(100, n),
        f"client-{n}",
        1,
        f"C-{n}",
        "intake.events",
        in_flight=False,
    )
    for n in range(1, 11)
]
DEAD = {LOG[1].event_id, LOG[4].event_id, LOG[8].event_id}
"""Of the log's events, those the topic dead-lettered; the consumer applied the even ones."""
APPLIED = {e.event_id for n, e in enumerate(LOG) if n % 2 == 0} - DEAD
OTHERS = [uuid.uuid4() for _ in range(500)]
"""Dead letters of events no store of this log has (what the topic mostly holds)."""


class FakeConn:
    @contextlib.asynccontextmanager
    async def transaction(self, **_: Any) -> AsyncIterator[None]:
        yield


@contextlib.asynccontextmanager
async def fake_connection(dsn: str) -> AsyncIterator[FakeConn]:
    yield FakeConn()


async def log_page(
    conn: Any, source: str, *, after: LogPosition, limit: int, grace_s: float
) -> list[StoreEvent]:
    later = [e for e in LOG if e.log_position.global_position > after.global_position]
    return later[:limit]


async def no_streams(conn: Any, source: str, *, before: Any, limit: int) -> list[StoreEvent]:
    return []


async def nothing_stored(conn: Any, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    return set()


class Topic:
    """The dead-letter topic: each read a page of records; what each read was asked."""

    def __init__(self, ids: list[uuid.UUID]) -> None:
        self.ids = ids
        self.reads = 0

    async def __call__(
        self, bootstrap: str, topics: Sequence[str], *, within_s: float, page: int
    ) -> AsyncIterator[list[Any]]:
        self.reads += 1
        for first in range(0, len(self.ids), page):
            yield [
                SimpleNamespace(headers=[("event_id", str(i).encode())], value=b"{}")
                for i in self.ids[first : first + page]
            ]


def consumer() -> ConsumerSource:
    async def applied() -> list[AppliedEvent]:
        raise AssertionError("read whole")

    async def has(ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return set(ids) & APPLIED

    async def applied_page(after: int, limit: int) -> list[AppliedEvent]:
        return []

    async def applied_among(ids: Sequence[uuid.UUID]) -> list[AppliedEvent]:
        return []

    return ConsumerSource(
        "audit-consumer",
        "dlq",
        applied,
        has=has,
        applied_among=applied_among,
        applied_page=applied_page,
    )


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Topic:
    made = Topic([*OTHERS[:250], *sorted(DEAD, key=lambda i: i.int), *OTHERS[250:]])
    monkeypatch.setattr(running, "store_connection", fake_connection)
    monkeypatch.setattr(running, "read_store_log_page", log_page)
    monkeypatch.setattr(running, "read_stream_page", no_streams)
    monkeypatch.setattr(running, "stored_ids", nothing_stored)
    monkeypatch.setattr(running, "topic_pages", made)
    return made


async def test_dead_letters_are_asked_about_a_bounded_few_and_only_those_kept(
    topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[tuple[int, int]] = []
    among = running.dead_lettered_among

    async def watched(bootstrap: str, name: str, ids: Any, **kw: Any) -> set[uuid.UUID]:
        found = await among(bootstrap, name, ids, **kw)
        answers.append((len(ids), len(found)))
        return found

    monkeypatch.setattr(running, "dead_lettered_among", watched)
    result = await reconcile(
        [StoreSource("intake", "dsn")], [consumer()], bootstrap="b", page=2, candidates=3
    )
    (report,) = result.reports
    assert report.count("dead_lettered") == 3
    assert report.count("missing") == 10 - 3 - len(APPLIED)
    assert {e.event_id for e in report.dead_lettered} == DEAD
    assert [e.log_position.global_position for e in report.missing] == [4, 6, 8, 10]
    # never more than the bound and a page asked about, never more kept than was asked
    assert answers
    assert all(asked <= 3 + 2 - 1 for asked, _ in answers)
    assert all(kept <= asked for asked, kept in answers)
    assert sum(kept for _, kept in answers) == 3
    assert topic.reads == len(answers)


async def test_a_healthy_log_reads_no_dead_letter_topic(topic: Topic) -> None:
    everything = {e.event_id for e in LOG}

    async def has(ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return set(ids) & everything

    healthy = consumer()
    object.__setattr__(healthy, "has", has)
    result = await reconcile([StoreSource("intake", "dsn")], [healthy], bootstrap="b", page=4)
    assert result.differences == 0
    assert topic.reads == 0


async def test_a_repair_re_queues_every_missing_event_once_and_no_dead_letter(
    topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[uuid.UUID] = []

    async def requeue(conn: Any, events: Sequence[StoreEvent]) -> int:
        queued.extend(e.event_id for e in events)
        return len(events)

    monkeypatch.setattr(running, "requeue", requeue)
    result = await reconcile(
        [StoreSource("intake", "dsn")],
        [consumer()],
        bootstrap="b",
        page=3,
        candidates=1,
        repair=True,
    )
    assert result.requeued == {"intake": 4}
    assert sorted(queued, key=lambda i: i.int) == [LOG[n].event_id for n in (3, 5, 7, 9)]

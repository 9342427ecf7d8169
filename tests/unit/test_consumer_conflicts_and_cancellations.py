"""The consumers' retries of the event store's own conflicts and of cancelled statements
(#12, docs/reliability.md): a lost race (``ConcurrencyError``, ``LocksDeadlocked``) is run
again, a bounded number of times; a statement cancelled again and again on one event alone,
while the rest of its fetch goes through, dead-letters that event with the reason instead of
holding the consumer; when nothing else goes through, it is retried, never dead-lettered."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from tests.support.events import recorded_event

from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.application.reprojection import reproject_client
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.ports import ConcurrencyError, LocksDeadlocked
from branchline_shared.kafka import consuming
from branchline_shared.kafka.consuming import (
    CANCELLED_ALONE,
    CONFLICT_RERUNS,
    BatchConsumer,
    RawMessage,
    StatementCancelled,
    retry_transient,
)
from branchline_shared.kafka.wire import SourcePosition, encode_event

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consuming, "FIRST_BACKOFF_S", 0.001)
    # The consumer's own retries take the default ceiling (5 s): doubled from 1 ms, a test
    # that retries a dozen times slept ~4 s of it, while only the counts are asserted (#12).
    monkeypatch.setitem(consuming.retry_transient.__kwdefaults__, "max_backoff_s", 0.004)


def failing(errors: list[Exception]) -> tuple[Any, list[int]]:
    """Work that raises ``errors`` in turn, then returns "done"; and its call count."""
    calls = [0]

    async def work() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return "done"

    return work, calls


@pytest.mark.parametrize("conflict", [ConcurrencyError, LocksDeadlocked])
async def test_a_lost_race_is_run_again_up_to_the_reruns(conflict: type[Exception]) -> None:
    work, calls = failing([conflict("lost")] * CONFLICT_RERUNS)
    assert await retry_transient(work, consumer="t", max_backoff_s=0.001) == "done"
    assert calls[0] == CONFLICT_RERUNS + 1


async def test_the_same_conflict_on_every_run_fails_past_the_reruns() -> None:
    work, calls = failing([ConcurrencyError("ours")] * (CONFLICT_RERUNS + 1))
    with pytest.raises(ConcurrencyError):
        await retry_transient(work, consumer="t", max_backoff_s=0.001)
    assert calls[0] == CONFLICT_RERUNS + 1


def cancelled() -> Exception:
    return asyncpg.QueryCanceledError("canceling statement due to statement timeout")


async def test_a_statement_cancelled_in_a_row_gives_up_only_when_asked_to() -> None:
    work, calls = failing([cancelled()] * CANCELLED_ALONE)
    with pytest.raises(StatementCancelled, match=f"statement cancelled {CANCELLED_ALONE} times"):
        await retry_transient(work, consumer="t", cancelled_limit=CANCELLED_ALONE)
    assert calls[0] == CANCELLED_ALONE
    work, calls = failing([cancelled()] * (3 * CANCELLED_ALONE))
    assert await retry_transient(work, consumer="t", max_backoff_s=0.001) == "done"


async def test_only_cancellations_in_a_row_count() -> None:
    """A lost connection between two cancellations says nothing of the work's statement."""
    errors: list[Exception] = [cancelled()] * (CANCELLED_ALONE - 1)
    errors += [OSError("lost"), *[cancelled()] * (CANCELLED_ALONE - 1)]
    work, _ = failing(errors)
    assert await retry_transient(work, consumer="t", cancelled_limit=CANCELLED_ALONE) == "done"


def an_event(n: int) -> RecordedEvent:
    return recorded_event(
        "client.registered",
        {"client_type": "individual", "rm_id": "rm-7"},
        at=datetime(2026, 11, 1, tzinfo=UTC),
        client_id=f"C-{n}",
        version=1,
    )


class Letters:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send(self, raw: RawMessage, reason: str) -> None:
        self.sent.append((raw.offset, reason))


def decoding_consumer(handle: Any, letters: Letters, answering: Any = None) -> BatchConsumer:
    settings: Any = SimpleNamespace(
        kafka_fetch_max_wait_ms=50, consumer_cancelled_alone_attempts=ALONE
    )
    return BatchConsumer(
        settings=settings,
        topics=["events"],
        group_id="group",
        name=f"t-{uuid.uuid4().hex[:8]}",
        handle=handle,
        dead_letters=letters,  # type: ignore[arg-type]
        answering=answering,
    )


ALONE = 3  # the setting, as a test sets it (the default: CANCELLED_ALONE)


def probe(answers: list[bool]) -> tuple[Any, list[int]]:
    """A probe answering ``answers`` in turn, then True for ever; and its call count."""
    calls = [0]

    async def answering() -> bool:
        calls[0] += 1
        return answers[calls[0] - 1] if calls[0] <= len(answers) else True

    return answering, calls


def records(events: list[RecordedEvent]) -> list[Any]:
    return [
        SimpleNamespace(
            topic="events",
            partition=0,
            offset=n,
            key=b"k",
            value=encode_event(e.model_dump(mode="json")),
            headers=[],
        )
        for n, e in enumerate(events)
    ]


async def test_the_one_event_cancelled_alone_while_others_go_through_is_dead_lettered() -> None:
    events = [an_event(n) for n in range(4)]
    slow = events[2].event_id
    handled: list[uuid.UUID] = []

    async def handle(batch: list[RecordedEvent], _: Any) -> None:
        if any(e.event_id == slow for e in batch):
            raise cancelled()
        handled.extend(e.event_id for e in batch)

    letters = Letters()
    await decoding_consumer(handle, letters)._process(records(events))
    assert letters.sent == [(2, f"handler failed: statement cancelled {CANCELLED_ALONE} times")]
    assert sorted(handled) == sorted(e.event_id for e in events if e.event_id != slow)


async def test_an_event_alone_cancelled_past_the_bound_is_retried_not_dead_lettered() -> None:
    """Nothing else went through: the cancellations may be everyone's."""
    calls = 0

    async def handle(batch: list[RecordedEvent], _: Any) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2 * CANCELLED_ALONE:
            raise cancelled()

    letters = Letters()
    await decoding_consumer(handle, letters)._process(records([an_event(1)]))
    assert letters.sent == []
    assert calls == 2 * CANCELLED_ALONE + 1


async def test_a_re_projection_that_loses_a_race_fails_its_unit_instead_of_skipping() -> None:
    """Skipped, the late event's effect would be missing from the read models for good; the
    unit fails instead, and the worker's retry runs it again (old code: skipped, counted)."""
    units = MemoryUnitsOfWork()
    kept = an_event(1)
    async with units.begin() as uow:
        await uow.journal.keep(kept, SourcePosition("intake", 1))  # in order: not late

    async def apply(_: Any, event: RecordedEvent) -> None:
        raise ConcurrencyError("a creation's id taken meanwhile")

    with pytest.raises(ConcurrencyError):
        async with units.begin() as uow:
            await reproject_client(uow, "C-1", apply)


async def test_a_lone_event_cancelled_while_the_database_answers_is_dead_lettered() -> None:
    """Nothing else in its fetch, but a probe on the pool answers after each cancellation:
    the cancellations are the event's own; dead-lettered with the reason after the setting's
    attempts alone (old code: retried for ever, the consumer held; #12)."""
    calls = 0

    async def handle(batch: list[RecordedEvent], _: Any) -> None:
        nonlocal calls
        calls += 1
        raise cancelled()

    letters = Letters()
    answering, probed = probe([])
    consumer = decoding_consumer(handle, letters, answering)
    async with asyncio.timeout(10):  # old code: never returns
        await consumer._process(records([an_event(1)]))
    assert letters.sent == [
        (
            0,
            f"handler failed: statement cancelled {ALONE} times in a row with the event "
            "alone, the database answering a probe after each",
        )
    ]
    # the fetch's bounded attempts (the event alone in it), then the probed ones
    assert calls == CANCELLED_ALONE + ALONE
    assert probed[0] == ALONE


async def test_a_lone_event_cancelled_while_the_probe_goes_unanswered_is_retried() -> None:
    """The database does not answer a trivial statement either (overloaded, away): every
    unanswered probe restarts the count; the event is retried until it goes through, never
    dead-lettered (no dead-letter storm)."""
    calls = 0
    unanswered = 4 * ALONE

    async def handle(batch: list[RecordedEvent], _: Any) -> None:
        nonlocal calls
        calls += 1
        if calls <= CANCELLED_ALONE + unanswered:
            raise cancelled()

    letters = Letters()
    # answered ALONE - 1 times in a row at most, then unanswered once, again and again
    answers = ([True] * (ALONE - 1) + [False]) * unanswered
    answering, _ = probe(answers)
    await decoding_consumer(handle, letters, answering)._process(records([an_event(1)]))
    assert letters.sent == []
    assert calls == CANCELLED_ALONE + unanswered + 1


async def test_a_probe_that_does_not_answer_restarts_the_count() -> None:
    answering, probed = probe([True, False, True, True])
    work, calls = failing([cancelled()] * 10)
    with pytest.raises(StatementCancelled) as raised:
        await retry_transient(work, consumer="t", cancelled_limit=3, answering=answering)
    assert (calls[0], probed[0], raised.value.attempts, raised.value.probed) == (5, 5, 3, True)

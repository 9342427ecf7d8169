"""The rebuild's replay decodes what the projection reads, once, and no more (#12)."""

from __future__ import annotations

import contextlib
import gc
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest
from followup_factories import MONDAY_9, RM_ID, an_event, count_payload_parses

from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.adapters.topic_replay import ReplayedMessage
from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.rebuild import YOUNG_THRESHOLD, rebuild_read_models
from branchline_followup.application.task_creations import creation_event
from branchline_followup.domain import ClientContext, CreateTask, FollowupPolicy, decide
from branchline_shared.events import typed
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


class Source:
    def __init__(self, events: list[RecordedEvent], *, from_store: bool = False) -> None:
        self._messages = [
            ReplayedMessage(
                "t", 0, n, 0, orjson.dumps(e.model_dump(mode="json")), from_store=from_store
            )
            for n, e in enumerate(events)
        ]

    async def start(self) -> int:
        return len(self._messages)

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        messages, self._messages = self._messages, []
        for message in messages:
            yield message

    async def extend_to_current_end(self) -> int:
        return 0

    async def stop(self) -> None:
        return None


class Target:
    """The rebuild's target on the in-memory units (one unit per batch, the swap one more)."""

    schema = "memory"
    retired = "memory-retired"
    swap_lock_waits = 0

    def __init__(self, units: MemoryUnitsOfWork) -> None:
        self.units = units
        self.discarded = False

    async def open(self) -> None:
        return None

    def batch(self) -> contextlib.AbstractAsyncContextManager[FollowupUnitOfWork]:
        return self.units.begin()

    def swap(self) -> contextlib.AbstractAsyncContextManager[FollowupUnitOfWork]:
        return self.units.begin()

    async def loaded(self) -> None:
        return None

    async def store_events_not_on_kafka(self) -> list[tuple[RecordedEvent, SourcePosition]]:
        return []

    async def swap_in(self, *, applied: int, skipped: int) -> None:
        return None

    async def close(self) -> None:
        return None

    async def drop_retired(self) -> None:
        return None

    async def discard(self) -> None:
        self.discarded = True


async def test_a_replayed_task_creation_is_marked_applied_without_its_payload_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The projection only marks a recorded creation applied (its payload is read where the
    # creation is looked up, for the event that decided it): the replay decodes its envelope
    # alone; every other event is decoded once, envelope and payload.
    parsed = count_payload_parses(monkeypatch)
    registered = an_event(
        "client.registered",
        {"client_type": "individual", "rm_id": RM_ID},
        at=MONDAY_9 - timedelta(days=1),
    )
    # the creation of the revisit the registration makes due, as the live worker recorded it
    client = ClientContext(client_id=registered.client_id or "", rm_id=RM_ID)
    (command,) = decide(typed.decode(registered), client, [], FollowupPolicy())
    assert isinstance(command, CreateTask)
    creation = creation_event(command.task, stream_version=1, now=MONDAY_9)
    parsed.clear()
    units = MemoryUnitsOfWork()
    result = await rebuild_read_models(
        target=Target(units),
        source=Source([registered, creation]),
        policy=FollowupPolicy(),
    )
    assert (result.applied, result.skipped) == (2, 0)
    assert parsed == ["client.registered"]
    assert {registered.event_id, creation.event_id} <= set(units.state.applied)
    assert uuid.UUID(str(creation.data["task_id"])) in units.state.tasks


@pytest.mark.parametrize("from_store", [False, True])
async def test_only_what_is_read_from_a_store_skips_the_entry_checks(from_store: bool) -> None:
    # The same bytes, with a token intake would have refused (a zero-width space): read from a
    # topic (an edge) they are refused, as the live worker refuses them; read from Branchline's
    # own event store (--from-stores) they are what intake let in, read without its checks.
    registered = an_event(
        "client.registered", {"client_type": "individual", "rm_id": RM_ID}
    ).model_copy(update={"correlation_id": "c\u200b1"})
    units = MemoryUnitsOfWork()
    result = await rebuild_read_models(
        target=Target(units),
        source=Source([registered], from_store=from_store),
        policy=FollowupPolicy(),
    )
    assert (result.applied, result.skipped) == ((1, 0) if from_store else (0, 1))
    assert (registered.event_id in units.state.applied) is from_store


class FailingSwap(Target):
    def swap(self) -> contextlib.AbstractAsyncContextManager[FollowupUnitOfWork]:
        raise RuntimeError("the swap lock stayed busy")


async def test_a_rebuild_that_fails_before_its_swap_discards_its_copy() -> None:
    # nothing resumes from a failed rebuild's schema (#12): it is dropped, not left behind
    registered = an_event("client.registered", {"client_type": "individual", "rm_id": RM_ID})
    failing = FailingSwap(MemoryUnitsOfWork())
    with pytest.raises(RuntimeError, match="busy"):
        await rebuild_read_models(
            target=failing, source=Source([registered]), policy=FollowupPolicy()
        )
    assert failing.discarded
    swapped = Target(MemoryUnitsOfWork())
    await rebuild_read_models(target=swapped, source=Source([registered]), policy=FollowupPolicy())
    assert not swapped.discarded


class FreezeWatchingSource(Source):
    """Notes the collector's frozen count as each message is read."""

    def __init__(self, events: list[RecordedEvent]) -> None:
        super().__init__(events)
        self.frozen: list[int] = []
        self.young: list[int] = []

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        async for message in super().messages():
            self.frozen.append(gc.get_freeze_count())
            self.young.append(gc.get_threshold()[0])
            yield message


def a_history() -> list[RecordedEvent]:
    return [
        an_event(
            "client.registered",
            {"client_type": "individual", "rm_id": RM_ID},
            at=MONDAY_9 + timedelta(minutes=n),
        )
        for n in range(3)
    ]


async def test_a_settled_heap_is_frozen_after_each_batch_and_released_at_the_end() -> None:
    # The command's process (#12): what survives a batch is frozen (the oldest generation no
    # longer walks it again); everything is unfrozen when the rebuild ends; the read models
    # are those of the same rebuild that does not settle.
    events = a_history()
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    assert thresholds[0] < YOUNG_THRESHOLD
    plain = MemoryUnitsOfWork()
    await rebuild_read_models(
        target=Target(plain), source=Source(events), policy=FollowupPolicy(), batch_size=1
    )
    settled = MemoryUnitsOfWork()
    source = FreezeWatchingSource(events)
    result = await rebuild_read_models(
        target=Target(settled),
        source=source,
        policy=FollowupPolicy(),
        batch_size=1,
        settle_heap=True,
    )
    assert (result.applied, result.skipped) == (3, 0)
    first, *later = source.frozen
    assert first == 0
    assert all(count > 0 for count in later)
    assert gc.get_freeze_count() == 0
    assert settled.state == plain.state
    # once settled, young collections wait for many more allocations; restored at the end
    assert source.young == [thresholds[0]] + [YOUNG_THRESHOLD] * 2
    assert gc.get_threshold() == thresholds


async def test_a_rebuild_that_fails_releases_its_settled_heap() -> None:
    thresholds = gc.get_threshold()
    failing = FailingSwap(MemoryUnitsOfWork())
    with pytest.raises(RuntimeError, match="busy"):
        await rebuild_read_models(
            target=failing,
            source=Source(a_history()),
            policy=FollowupPolicy(),
            batch_size=1,
            settle_heap=True,
        )
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


async def test_a_heap_its_process_froze_before_is_left_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the process froze itself could not be told apart when unfreezing: not settled.
    # The process's freezing is stood in for (a real gc.freeze here would freeze the whole
    # test session's heap, garbage included, and the unfreeze after it would hand that
    # garbage to a later collection): the rebuild must neither collect, freeze nor unfreeze.
    calls: list[str] = []
    monkeypatch.setattr(gc, "get_freeze_count", lambda: 1234)
    for name in ("collect", "freeze", "unfreeze", "set_threshold"):
        monkeypatch.setattr(gc, name, lambda *_, name=name: calls.append(name))
    result = await rebuild_read_models(
        target=Target(MemoryUnitsOfWork()),
        source=Source(a_history()),
        policy=FollowupPolicy(),
        batch_size=1,
        settle_heap=True,
    )
    assert (result.applied, result.skipped) == (3, 0)
    assert calls == []

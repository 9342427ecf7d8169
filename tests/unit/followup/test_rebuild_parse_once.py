"""A partitioned rebuild's reading process parses each message's envelope once (#12): the
topic order reads it and the routing to the processes reuses it."""

from __future__ import annotations

import queue
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from followup_factories import an_event
from test_followup_rebuild_replay import Source, Target

from branchline_followup.adapters.memory_unit_of_work import MemoryUnitsOfWork
from branchline_followup.adapters.partitioned_rebuild import ProcessPartitions
from branchline_followup.application import rebuild_routes
from branchline_followup.application.rebuild import LoadResult, rebuild_read_models
from branchline_followup.domain import FollowupPolicy
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


class AdoptingTarget(Target):
    async def adopt_load(self, written: int) -> None:
        return None


class RoutedHere(ProcessPartitions):
    """The reading process's part of :class:`ProcessPartitions` (its routing), into queues of
    this process instead of spawned processes'."""

    def __init__(self) -> None:
        super().__init__(BranchlineSettings(), 2, batch_size=500)
        self.inboxes: list[queue.Queue[Any]] = [queue.Queue(), queue.Queue()]

    async def load(self, schema: str, messages: Any, on_progress: Any) -> LoadResult:
        await self._route(messages, self.inboxes, [], queue.Queue(), on_progress)  # type: ignore[arg-type]
        return LoadResult(applied=0, skipped=0, written=0)

    def routed(self) -> list[list[bytes | None]]:
        parts: list[list[bytes | None]] = []
        for inbox in self.inboxes:
            values: list[bytes | None] = []
            while (batch := inbox.get_nowait()) is not None:
                values.extend(message.value for message in batch)
            parts.append(values)
        return parts


def counted_loads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    parsed: list[bytes] = []

    def loads(value: bytes) -> Any:
        parsed.append(value)
        return orjson.loads(value)

    monkeypatch.setattr(
        rebuild_routes,
        "orjson",
        SimpleNamespace(loads=loads, JSONDecodeError=orjson.JSONDecodeError),
    )
    return parsed


async def test_each_message_is_parsed_once_for_its_order_and_its_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[RecordedEvent] = [
        an_event("client.registered", {"client_type": "individual", "rm_id": "rm-1"}, client_id=c)
        for c in ("C-1", "C-2", "C-3", "C-4")
    ]
    source = Source(events)
    values = [m.value for m in source._messages]
    parsed = counted_loads(monkeypatch)
    load = RoutedHere()
    await rebuild_read_models(
        target=AdoptingTarget(MemoryUnitsOfWork()),
        source=source,
        policy=FollowupPolicy(),
        partitioned=load,
    )
    assert sorted(parsed) == sorted(values)  # once each, not once for the order and again
    routed = load.routed()
    assert all(routed)  # both processes have clients of these
    assert sorted(routed[0] + routed[1]) == sorted(values)
    for part, share in enumerate(routed):
        for value in share:
            assert rebuild_routes.route_of(value, 2) == part

"""The bench probes read what the read models applied a keyset page at a time, not with
``read_models_applied``'s one statement (#12)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from bench import profile_memory, profile_self_check_order, profile_self_check_order_memory

from branchline_followup.adapters import reconciling
from branchline_shared.reconcile.compare import AppliedEvent
from branchline_shared.reconcile.running import applied_in_pages

APPLIED = [AppliedEvent(uuid.UUID(int=n), seq=10 * n) for n in range(1, 8)]


class Pages:
    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    async def __call__(self, after: int, limit: int) -> list[AppliedEvent]:
        self.asked.append((after, limit))
        return [entry for entry in APPLIED if (entry.seq or 0) > after][:limit]


async def test_every_page_is_read_after_the_last_ones_sequence() -> None:
    pages = Pages()
    assert await applied_in_pages(pages, 3) == APPLIED
    assert pages.asked == [(0, 3), (30, 3), (60, 3)]


async def test_an_empty_record_is_one_question() -> None:
    async def nothing(after: int, limit: int) -> list[AppliedEvent]:
        return []

    assert await applied_in_pages(nothing, 3) == []


@pytest.mark.parametrize(
    "probe", [profile_memory, profile_self_check_order, profile_self_check_order_memory]
)
async def test_the_probes_read_the_read_models_a_page_at_a_time(
    probe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = object()
    pages = Pages()

    async def whole(_pool: Any) -> list[AppliedEvent]:
        raise AssertionError("read_models_applied read whole")

    async def page(got: Any, after: int, limit: int) -> list[AppliedEvent]:
        assert got is pool
        return await pages(after, limit)

    monkeypatch.setattr(reconciling, "read_models_applied", whole)
    monkeypatch.setattr(reconciling, "read_models_applied_page", page)
    assert await probe.applied_reader(pool)() == APPLIED
    assert pages.asked == [(0, 1_000)]

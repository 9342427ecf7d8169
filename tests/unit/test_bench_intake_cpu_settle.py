"""``bench.intake_cpu`` lets the consumers catch up before each repetition (#12, Round 31:
without it the last of 6 repetitions cost more than the first in 9 of 12 stacks), with
``bench.run.settle`` as `make bench` does, and says how long that took; ``--balanced`` also
opens ``--existing-clients``' connections."""

from __future__ import annotations

from typing import Any

import pytest
from bench import branchline_measures
from bench.intake_cpu import settled
from bench.loadgen import Latencies

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def test_a_repetition_waits_for_the_consumers_and_its_line_says_how_long() -> None:
    calls: list[str] = []

    async def wait() -> dict[str, float]:
        calls.append("waited")
        return {"followup": 3.25, "audit": 0.0}

    text = await settled(wait)

    assert calls == ["waited"]
    assert text.startswith("settled in ")
    assert "still applying: audit 0.0 s, followup 3.2 s" in text


async def test_no_settle_waits_for_nothing_and_says_nothing() -> None:
    assert await settled(None) == ""


async def test_consents_to_existing_clients_go_over_connections_opened_already(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    opened: list[Any] = [object() for _ in range(4)]

    async def closed_loop(*args: Any, **kwargs: Any) -> Latencies:
        seen.update(kwargs, bodies=args[3])
        return Latencies(8, 1.0, 1.0, 1.0, 1.0, 1.0)

    monkeypatch.setattr(branchline_measures, "closed_loop", closed_loop)

    await branchline_measures.existing_client_posts(
        1, "token", "run", 8, 2, connections=4, opened=opened
    )

    assert seen["opened"] is opened
    # connection c still sends for clients c + 4 * m: the same clients as without ``opened``
    assert [b"C-run-1" in body for body in seen["bodies"]][:2] == [False, True]

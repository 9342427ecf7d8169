"""The standalone intake relay's pool skips asyncpg's reset query (#12, Round 36).

``branchline run intake-relay`` reads and marks the outbox through its pool, two statements a
round; with asyncpg's default reset each release sent one more round trip
(``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), 6.8 % of the relay
process's busy samples at 1,089 ev/s. Nothing on that pool outlives a transaction (the relay
lock and its LISTEN have a connection of their own), so it is opened as the API's pool is.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import branchline_intake.bootstrap as intake_bootstrap

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class Opened(Exception):
    """Ends the start once the pool was asked for."""


async def test_the_standalone_relays_pool_is_opened_without_session_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[dict[str, Any]] = []

    async def ensure_topics(*_: Any, **__: Any) -> None:
        return None

    async def open_pool(dsn: str, **options: Any) -> Any:
        asked.append({"dsn": dsn, **options})
        raise Opened

    monkeypatch.setattr(intake_bootstrap, "declare_topics", lambda _: SimpleNamespace(all=list))
    monkeypatch.setattr(intake_bootstrap, "ensure_topics", ensure_topics)
    monkeypatch.setattr(intake_bootstrap, "open_pool", open_pool)
    settings = SimpleNamespace(
        kafka_bootstrap="127.0.0.1:1", intake_database_url="postgresql://nowhere/intake"
    )

    with pytest.raises(Opened):
        await intake_bootstrap.run_relay(settings)  # type: ignore[arg-type]

    assert len(asked) == 1
    assert asked[0]["dsn"] == "postgresql://nowhere/intake"
    # released connections skip the reset query (open_pool's promise: no session state)
    assert asked[0].get("session_state") is False

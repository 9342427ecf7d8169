"""D-11 (#12): a ledger given no signed-leaf check refuses to read legal holds and relationship
ends (UncheckedFacts), before it touches the database: a ledger built as ``PostgresLedger(pool)``
(a tool's, as the prune command's was) cannot decide by holds it did not hold against their
signed checkpoint. Before, it read them unchecked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from branchline_audit.adapters.ledger import PostgresLedger, UncheckedFacts
from branchline_audit.application.holds import HOLD_TYPES, HoldActor, list_holds, place_hold
from branchline_audit.application.pruning import prune_expired
from branchline_audit.domain.retention import RetentionPolicy
from branchline_shared.clock import FixedClock

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class NoPool:
    """Any use of the database fails the test: the refusal comes before it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was used ({name}) before the refusal")


def bare() -> PostgresLedger:
    return PostgresLedger(cast(Any, NoPool()))


def never(_: Any) -> dict[str, Any]:
    raise AssertionError("decided without the check")


READS: dict[str, Callable[[PostgresLedger], Awaitable[Any]]] = {
    "facts": lambda ledger: ledger.facts(HOLD_TYPES),
    "facts of a client": lambda ledger: ledger.facts(HOLD_TYPES, "C-1"),
    "append decided": lambda ledger: ledger.append_decided(HOLD_TYPES, never, now=T),
    "list holds": lambda ledger: list_holds(ledger),
    "place a hold": lambda ledger: place_hold(
        ledger,
        FixedClock(T),
        actor=HoldActor("auditor-1", "auditor"),
        client_id="C-1",
        hold_id="LH-1",
        reason="regulatory_investigation",
    ),
    "prune": lambda ledger: prune_expired(
        ledger, RetentionPolicy({"default": 10}), FixedClock(T), actor_id="ops-1", dry_run=True
    ),
}


@pytest.mark.parametrize("read", list(READS), ids=list(READS))
async def test_a_ledger_without_the_check_refuses_to_read_the_facts(read: str) -> None:
    with pytest.raises(UncheckedFacts, match="D-11") as refused:
        await READS[read](bare())
    assert refused.value.rule == "D-11"
    assert "bootstrap.audit_context" in str(refused.value)


async def test_with_the_check_given_the_read_goes_on() -> None:
    """The composition root's way (``hold_facts_to``): the read reaches the database."""

    async def check(leaf: tuple[int, bytes | None]) -> None:
        raise AssertionError("nothing was read")

    ledger = bare()
    ledger.hold_facts_to(check)
    with pytest.raises(AssertionError, match="database was used"):
        await ledger.facts(HOLD_TYPES)

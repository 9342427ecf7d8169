"""Upcasters bring events of older payload versions to the current one (ADR-0004); shown with
a test-only example: ``product.sold`` v1 → v2 (``amount`` split into value and currency) →
v3 (``channel`` renamed ``sales_channel``)."""

from __future__ import annotations

from typing import Any

import pytest

from branchline_shared.events.catalogue import CATALOGUE_VERSION
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.upcasting import (
    UPCASTERS,
    MissingUpcaster,
    NewerSchemaVersion,
    UpcasterRegistry,
    upcast,
)

pytestmark = pytest.mark.unit

CURRENT = {**CATALOGUE_VERSION, "product.sold": 3}


def recorded(
    schema_version: int, data: dict[str, Any], type_: str = "product.sold"
) -> RecordedEvent:
    return RecordedEvent.model_validate(
        {
            "event_id": "0193f0c2-7a1e-7c3b-9d2e-5f8a1b2c3d4e",
            "type": type_,
            "schema_version": schema_version,
            "occurred_at": "2026-11-22T09:00:00+08:00",
            "recorded_at": "2026-11-22T09:00:01+08:00",
            "source": "intake",
            "actor": {"id": "rm-42", "role": "rm"},
            "client_id": "C-10001",
            "stream_id": "client-C-10001",
            "stream_version": 7,
            "data": data,
        }
    )


@pytest.fixture
def registry() -> UpcasterRegistry:
    example = UpcasterRegistry()

    @example.register("product.sold", from_version=1)
    def _split_amount(data: dict[str, Any]) -> dict[str, Any]:
        value, currency = str(data.pop("amount")).split(" ")
        return {**data, "amount": value, "currency": currency}

    @example.register("product.sold", from_version=2)
    def _rename_channel(data: dict[str, Any]) -> dict[str, Any]:
        data["sales_channel"] = data.pop("channel", "branch")
        return data

    return example


def test_an_old_event_is_upcast_step_by_step_to_the_current_version(
    registry: UpcasterRegistry,
) -> None:
    old = recorded(1, {"product_id": "P-1", "amount": "1000.00 CNY", "channel": "app"})
    new = upcast(old, registry=registry, current=CURRENT)
    assert new.schema_version == 3
    assert new.data == {
        "product_id": "P-1",
        "amount": "1000.00",
        "currency": "CNY",
        "sales_channel": "app",
    }
    assert new.model_dump(exclude={"data", "schema_version"}) == old.model_dump(
        exclude={"data", "schema_version"}
    )


def test_an_event_in_between_is_upcast_from_its_own_version(registry: UpcasterRegistry) -> None:
    middle = recorded(2, {"product_id": "P-1", "amount": "5", "currency": "EUR"})
    new = registry.upcast(middle, CURRENT)
    assert new.schema_version == 3
    assert new.data["sales_channel"] == "branch"


def test_the_stored_event_is_left_untouched(registry: UpcasterRegistry) -> None:
    old = recorded(1, {"product_id": "P-1", "amount": "1 CNY", "channel": "app"})
    upcast(old, registry=registry, current=CURRENT)
    assert old.schema_version == 1
    assert old.data == {"product_id": "P-1", "amount": "1 CNY", "channel": "app"}


def test_a_current_event_is_returned_as_it_is(registry: UpcasterRegistry) -> None:
    event = recorded(3, {"product_id": "P-1"})
    assert upcast(event, registry=registry, current=CURRENT) is event


def test_an_unknown_type_is_returned_as_it_is(registry: UpcasterRegistry) -> None:
    event = recorded(1, {}, type_="visit.teleported")
    assert upcast(event, registry=registry, current=CURRENT) is event


def test_a_missing_step_is_a_clear_error() -> None:
    partial = UpcasterRegistry()
    partial.add("product.sold", 1, lambda data: data)
    with pytest.raises(MissingUpcaster, match=r"'product.sold' from v2 \(needed to reach v3\)"):
        partial.upcast(recorded(1, {}), CURRENT)


def test_an_event_newer_than_the_reader_is_refused(registry: UpcasterRegistry) -> None:
    with pytest.raises(NewerSchemaVersion, match="upgrade"):
        registry.upcast(recorded(4, {}), CURRENT)


def test_one_upcaster_per_type_and_version() -> None:
    twice = UpcasterRegistry()
    twice.add("product.sold", 1, lambda data: data)
    with pytest.raises(ValueError, match="exists"):
        twice.add("product.sold", 1, lambda data: data)
    with pytest.raises(ValueError, match="start at 1"):
        twice.add("product.sold", 0, lambda data: data)
    assert ("product.sold", 1) in twice
    assert twice.registered() == frozenset({("product.sold", 1)})


def test_the_products_registry_upcasts_todays_events_to_themselves() -> None:
    """Every type is at version 1 today: the product's registry changes nothing."""
    event = recorded(1, {"product_id": "P-1", "amount": "10"})
    assert CATALOGUE_VERSION["product.sold"] == 1
    assert upcast(event) is event
    assert all(version >= 1 for _, version in UPCASTERS.registered())

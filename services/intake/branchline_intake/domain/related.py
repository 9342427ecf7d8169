"""What a client's rules need to know beyond the client's own stream (D-13, D-14, D-16).

The product shelf and the staff records live on their own streams (``product-<id>``,
``staff-<id>``). The write path reads the streams a candidate refers to in the same
transaction as the client's, so the decision stays pure and consistent: it receives them
here, already folded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.kinds import KindOf
from branchline_intake.domain.shelf import ShelfProduct, rebuild_shelf_product
from branchline_intake.domain.staff import StaffMember, rebuild_staff_member
from branchline_shared.events.catalogue import PAYLOAD_MODELS, ProductEvent
from branchline_shared.events.envelope import product_stream_id, staff_stream_id


@dataclass(frozen=True, slots=True)
class Related:
    """The shelf products and staff members a candidate refers to."""

    products: Mapping[str, ShelfProduct] = field(default_factory=dict)
    staff: Mapping[str, StaffMember] = field(default_factory=dict)


NOTHING_RELATED = Related()
_PRODUCT_EVENT = KindOf(ProductEvent)


def referenced_streams(event: DomainEvent) -> tuple[str, ...]:
    """The streams a client event's rules read: the product's shelf entry and the acting
    staff's records (for product events).

    Read from the typed payload, not from its dump (#12: every decided event asked, and the
    dump was most of the cost); the answer is :func:`referenced_stream_ids`' on the dump:
    the payload's class is its type's model (``DomainEvent`` checks that), and a product
    event's ``product_id`` is a string, dumped as it is."""
    payload = event.payload
    if _PRODUCT_EVENT(payload) is None:  # asked once per class (#12)
        return ()
    product_id = cast(ProductEvent, payload).product_id
    if not isinstance(product_id, str):
        return ()
    streams = [product_stream_id(product_id.strip())]
    if event.actor_id is not None:
        streams.append(staff_stream_id(event.actor_id))
    return tuple(streams)


def referenced_stream_ids(
    event_type: str, data: Mapping[str, Any], actor_id: str | None
) -> tuple[str, ...]:
    """:func:`referenced_streams` of an event not parsed yet (what a writer must lock before
    it decides); nothing for a type that reads no other stream or an unusable product id."""
    model = PAYLOAD_MODELS.get(event_type)
    product_id = data.get("product_id")
    if model is None or not issubclass(model, ProductEvent) or not isinstance(product_id, str):
        return ()
    streams = [product_stream_id(product_id.strip())]
    if actor_id is not None:
        streams.append(staff_stream_id(actor_id))
    return tuple(streams)


def related_from(event: DomainEvent, histories: Mapping[str, list[DomainEvent]]) -> Related:
    """:class:`Related` for ``event`` from the histories of its referenced streams."""
    payload = event.payload
    if not isinstance(payload, ProductEvent):
        return NOTHING_RELATED
    product_id = payload.product_id
    products = {
        product_id: rebuild_shelf_product(
            product_id, histories.get(product_stream_id(product_id), [])
        )
    }
    staff: dict[str, StaffMember] = {}
    if event.actor_id is not None:
        staff[event.actor_id] = rebuild_staff_member(
            event.actor_id, histories.get(staff_stream_id(event.actor_id), [])
        )
    return Related(products=products, staff=staff)

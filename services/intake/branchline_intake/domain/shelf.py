"""The product shelf (D-13): one product's approval, ratings and status, from its own stream.

The institution, not the branch system, rates each product (R1..R5), sets its category and
eligible client types and puts it on sale, suspends or withdraws it. A re-rating carries its
effective time; D-05 uses the rating *in force at the time* of the recommendation or sale, so
a later re-rating never changes what an earlier sale was decided on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.violations import D13, refuse
from branchline_shared.events.catalogue import (
    ClientType,
    EventPayload,
    ProductApproved,
    ProductCategory,
    ProductRerated,
    ProductRisk,
    ProductStatus,
    ProductSuspended,
    ProductWithdrawn,
)


@dataclass(frozen=True, slots=True)
class Rating:
    """One rating of the product, in force from ``effective_at`` (D-13)."""

    event_id: uuid.UUID
    risk: ProductRisk
    effective_at: datetime
    recorded_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """The product's status from ``at`` on."""

    event_id: uuid.UUID
    status: ProductStatus
    at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ShelfProduct:
    """A product as the institution has approved and rated it."""

    product_id: str
    name: str | None = None
    category: ProductCategory | None = None
    eligible_client_types: frozenset[ClientType] = frozenset()
    ratings: tuple[Rating, ...] = ()
    statuses: tuple[StatusChange, ...] = ()

    @property
    def approved(self) -> bool:
        return bool(self.statuses)

    @property
    def status(self) -> ProductStatus | None:
        """The status after every recorded change (``None``: never approved)."""
        return self.statuses[-1].status if self.statuses else None

    def status_at(self, at: datetime) -> ProductStatus | None:
        """The status in force at ``at`` (``None``: not approved by then)."""
        changes = [s for s in self.statuses if s.at <= at]
        return max(changes, key=lambda s: s.at).status if changes else None

    def rating_at(self, at: datetime) -> Rating | None:
        """D-13: the rating in force at ``at``: the latest one effective by then (a later
        recorded rating wins a tie)."""
        made = [r for r in self.ratings if r.effective_at <= at]
        if not made:
            return None
        return max(made, key=lambda r: (r.effective_at, r.recorded_at))

    @property
    def current_rating(self) -> Rating | None:
        return max(self.ratings, key=lambda r: (r.effective_at, r.recorded_at), default=None)

    def apply(self, event: DomainEvent) -> ShelfProduct:
        payload = event.payload
        at = event.occurred_at
        match payload:
            case ProductApproved():
                rating = Rating(event.event_id, payload.risk, at, at, "approved")
                return replace(
                    self,
                    name=payload.name,
                    category=payload.category,
                    eligible_client_types=frozenset(payload.eligible_client_types),
                    ratings=(*self.ratings, rating),
                    statuses=(
                        *self.statuses,
                        StatusChange(event.event_id, ProductStatus.ON_SALE, at),
                    ),
                )
            case ProductRerated():
                rating = Rating(
                    event.event_id, payload.risk, payload.effective_at, at, payload.reason
                )
                return replace(self, ratings=(*self.ratings, rating))
            case ProductSuspended():
                change = StatusChange(event.event_id, ProductStatus.SUSPENDED, at, payload.reason)
                return replace(self, statuses=(*self.statuses, change))
            case ProductWithdrawn():
                change = StatusChange(event.event_id, ProductStatus.WITHDRAWN, at, payload.reason)
                return replace(self, statuses=(*self.statuses, change))
            case _:
                return self


def rebuild_shelf_product(product_id: str, events: list[DomainEvent]) -> ShelfProduct:
    product = ShelfProduct(product_id)
    for event in events:
        product = product.apply(event)
    return product


# --- guards of the shelf's own events ---------------------------------------------------------


def check_shelf_event(product: ShelfProduct, event: DomainEvent) -> EventPayload:
    """D-13: the shelf's own lifecycle: approved once (again only to resume a suspended
    product), re-rated, suspended and withdrawn only while on the shelf; a withdrawal is
    final; a re-rating takes effect no earlier than it is recorded (no backdated rating)."""
    payload = event.payload
    where = f"product {product.product_id!r}"
    status = product.status
    if isinstance(payload, ProductApproved):
        if status is ProductStatus.ON_SALE:
            raise refuse(D13, "Product already on the shelf", f"{where} is on sale: re-rate it")
        if status is ProductStatus.WITHDRAWN:
            raise refuse(D13, "Product withdrawn", f"{where} was withdrawn for good")
        return payload
    if status is None:
        raise refuse(
            D13, "Unknown product", f"{where} is not on the shelf: product.approved comes first"
        )
    if status is ProductStatus.WITHDRAWN:
        raise refuse(D13, "Product withdrawn", f"{where} was withdrawn for good")
    if isinstance(payload, ProductRerated) and payload.effective_at < event.occurred_at:
        raise refuse(
            D13,
            "Re-rating backdated",
            f"effective_at {payload.effective_at.isoformat()} is before the re-rating was "
            f"made ({event.occurred_at.isoformat()}): decisions already taken used the rating "
            "then in force",
            field="data.effective_at",
        )
    if isinstance(payload, ProductSuspended) and status is ProductStatus.SUSPENDED:
        raise refuse(D13, "Product already suspended", f"{where} is suspended")
    return payload


# --- what client events need of the shelf ------------------------------------------------------


def check_on_shelf(product: ShelfProduct | None, product_id: str, at: datetime) -> Rating:
    """D-13: the product is approved and on sale at ``at``; returns the rating in force."""
    where = f"product {product_id!r}"
    status = product.status_at(at) if product is not None else None
    if product is None or status is None:
        raise refuse(
            D13,
            "Product not on the shelf",
            f"{where} is not an approved product of the institution at {at.isoformat()}",
            field="data.product_id",
        )
    if status is not ProductStatus.ON_SALE:
        raise refuse(
            D13,
            f"Product {status.value}",
            f"{where} is {status.value} at {at.isoformat()}: it may not be recommended or sold",
            field="data.product_id",
        )
    rating = product.rating_at(at)
    if rating is None:  # approved with a rating, so only a tie of clocks could get here
        raise refuse(D13, "Product not rated", f"{where} has no rating in force at {at}")
    return rating


def check_stated_risk(
    product_id: str, stated: ProductRisk | None, rating: Rating, what: str
) -> None:
    """D-13: a risk level the branch states must be the shelf's. Refused rather than ignored:
    the branch system showed the client that level, so a disagreement means the client may
    have been told the wrong risk, which the firm must correct, not paper over."""
    if stated is not None and stated is not rating.risk:
        raise refuse(
            D13,
            "Product risk disagrees with the shelf",
            f"the {what} states {stated.value}, product {product_id!r} is rated "
            f"{rating.risk.value} (rating {rating.event_id})",
            field="data.product_risk",
        )


def check_eligible(product: ShelfProduct, client_type: ClientType | None) -> None:
    """D-13: the product's eligible client types."""
    if client_type is not None and client_type not in product.eligible_client_types:
        raise refuse(
            D13,
            "Client type not eligible",
            f"product {product.product_id!r} is for "
            f"{', '.join(sorted(t.value for t in product.eligible_client_types))}, "
            f"not {client_type.value} clients",
            field="data.product_id",
        )

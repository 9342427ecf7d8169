"""Reads of the product shelf and the staff records (D-13, D-14): what the rules decide on.

``GET /v1/products`` and ``GET /v1/products/{product_id}`` (status, the rating in force now and
the rating history with effective and recorded times), ``GET /v1/staff/{staff_id}``
(qualifications with their validity, training hours this year against the reference). Both
are folded from the subjects' own streams by the same domain code that decides.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.shelf import ShelfProduct, rebuild_shelf_product
from branchline_intake.domain.staff import StaffMember, rebuild_staff_member
from branchline_intake.entrypoints.http import ContextDep, Reader
from branchline_shared.events.envelope import Identifier, product_stream_id, staff_stream_id
from branchline_shared.http.problems import Problem

TRAINING_HOURS_REFERENCE = Decimal(40)
"""D-14: the reference of training hours a year (the followup quality measures use theirs)."""

shelf_router = APIRouter(prefix="/v1", tags=["product shelf and staff"])

SubjectId = Annotated[Identifier, Path(description="The product's or staff member's id.")]


class StreamLister(Protocol):
    async def stream_ids(self, prefix: str, *, limit: int = 1000) -> list[str]: ...


class RatingView(BaseModel):
    risk: str
    effective_at: datetime
    recorded_at: datetime
    reason: str | None
    event_id: str


class StatusView(BaseModel):
    status: str
    at: datetime
    reason: str | None
    event_id: str


class ProductView(BaseModel):
    product_id: str
    name: str | None
    category: str | None
    eligible_client_types: list[str]
    status: str | None = Field(description="on_sale, suspended or withdrawn (now)")
    risk_in_force: str | None = Field(description="the rating in force now (D-13)")
    ratings: list[RatingView] = Field(description="every rating, in the order recorded")
    statuses: list[StatusView]


class ProductList(BaseModel):
    products: list[ProductView]


class QualificationView(BaseModel):
    category: str
    certificate_id: str | None
    valid_from: datetime
    valid_until: datetime
    ended_at: datetime | None = Field(description="when a revocation ended it early")
    valid_now: bool
    event_id: str


class StaffView(BaseModel):
    staff_id: str
    qualifications: list[QualificationView]
    valid_categories: list[str] = Field(description="categories the staff may advise on now")
    training_year: int
    training_hours_this_year: Decimal
    training_hours_reference: Decimal
    declared_interests: list[dict[str, Any]]
    gifts: list[dict[str, Any]]


async def _folded(ctx: Any, stream_id: str) -> list[DomainEvent]:
    stored = await ctx.store.read_stream(stream_id, limit=10_000)
    return [DomainEvent.from_recorded(s.event) for s in stored]


def _product_view(product: ShelfProduct, now: datetime) -> ProductView:
    rating = product.rating_at(now)
    return ProductView(
        product_id=product.product_id,
        name=product.name,
        category=product.category.value if product.category else None,
        eligible_client_types=sorted(t.value for t in product.eligible_client_types),
        status=s.value if (s := product.status_at(now)) is not None else None,
        risk_in_force=rating.risk.value if rating else None,
        ratings=[
            RatingView(
                risk=r.risk.value,
                effective_at=r.effective_at,
                recorded_at=r.recorded_at,
                reason=r.reason,
                event_id=str(r.event_id),
            )
            for r in product.ratings
        ],
        statuses=[
            StatusView(status=c.status.value, at=c.at, reason=c.reason, event_id=str(c.event_id))
            for c in product.statuses
        ],
    )


def _staff_view(member: StaffMember, now: datetime) -> StaffView:
    return StaffView(
        staff_id=member.staff_id,
        qualifications=[
            QualificationView(
                category=p.category.value,
                certificate_id=p.certificate_id,
                valid_from=p.valid_from,
                valid_until=p.valid_until,
                ended_at=p.ended_at,
                valid_now=p.valid_at(now),
                event_id=str(p.event_id),
            )
            for p in member.periods
        ],
        valid_categories=sorted({p.category.value for p in member.periods if p.valid_at(now)}),
        training_year=now.year,
        training_hours_this_year=member.training_hours(now.year),
        training_hours_reference=TRAINING_HOURS_REFERENCE,
        declared_interests=[
            {"product_id": i.product_id, "declared_at": i.declared_at, "event_id": str(i.event_id)}
            for i in member.interests.values()
        ],
        gifts=[
            {
                "client_id": g.client_id,
                "value": g.value,
                "accepted": g.accepted,
                "at": g.at,
                "event_id": str(g.event_id),
            }
            for g in member.gifts
        ],
    )


@shelf_router.get("/products", response_model=ProductList, summary="The product shelf (D-13)")
async def list_products(request: Request, ctx: ContextDep, _: Reader) -> ProductList:
    lister: StreamLister | None = getattr(request.app.state, "stream_lister", None)
    if lister is None:
        raise Problem(503, "Unavailable", "the shelf cannot be listed here", kind="unavailable")
    prefix = product_stream_id("")
    now = ctx.clock.now()
    views = []
    for stream_id in await lister.stream_ids(prefix):
        product_id = stream_id.removeprefix(prefix)
        product = rebuild_shelf_product(product_id, await _folded(ctx, stream_id))
        if product.approved:
            views.append(_product_view(product, now))
    return ProductList(products=views)


@shelf_router.get(
    "/products/{product_id}",
    response_model=ProductView,
    summary="One product: status, the rating in force and the rating history (D-13)",
)
async def get_product(product_id: SubjectId, ctx: ContextDep, _: Reader) -> ProductView:
    events = await _folded(ctx, product_stream_id(product_id))
    product = rebuild_shelf_product(product_id, events)
    if not product.approved:
        raise Problem(404, "Not found", f"no product {product_id!r}", kind="product-not-found")
    return _product_view(product, ctx.clock.now())


@shelf_router.get(
    "/staff/{staff_id}",
    response_model=StaffView,
    summary="A member of staff: qualifications with validity, training hours this year (D-14)",
)
async def get_staff(staff_id: SubjectId, ctx: ContextDep, _: Reader) -> StaffView:
    events = await _folded(ctx, staff_stream_id(staff_id))
    if not events:
        raise Problem(404, "Not found", f"no records of staff {staff_id!r}", kind="staff-not-found")
    return _staff_view(rebuild_staff_member(staff_id, events), ctx.clock.now())

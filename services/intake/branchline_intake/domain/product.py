"""The product-sale sub-aggregate, one per ``product_id`` offered to the client (D-03, D-05,
D-13, D-14, D-16).

Every check is made as of the event's time (``occurred_at``):

* the product is on the institution's shelf and on sale, for this type of client, and any
  risk level the branch states is the shelf's rating in force (D-13);
* the recommending or selling staff holds a valid qualification for the product's category
  (D-14), and a recommendation by staff who declared an interest in the product discloses it
  (D-16);
* a valid risk assessment and ``R <= C`` with the rating in force (D-05);
* the disclosure is itemised (risks, returns, fees, holding period) and the terms name period,
  fees and rate or expected return (and repayment for a loan) (D-05);
* a sale also needs due diligence (D-03: identity by a counting method with a valid document,
  a clear screening, beneficial owners of a corporate client), an acknowledged itemised
  disclosure and a terms confirmation since the previous sale of the product: the client
  confirms their will again before every contract (签署合同前再次确认).

The as-of proof: intake writes into the sale the event ids of everything it relied on (identity,
screening, assessment, disclosure, terms, the shelf's rating, the seller's qualification, a late
entry's approval) and the time it received the sale.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from branchline_intake.domain.client import (
    Assessment,
    Client,
    check_assessment_valid,
    check_due_diligence,
)
from branchline_intake.domain.due_diligence import LateEntryApproval
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.policy import IntakePolicy
from branchline_intake.domain.related import Related
from branchline_intake.domain.shelf import (
    Rating,
    ShelfProduct,
    check_eligible,
    check_on_shelf,
    check_stated_risk,
)
from branchline_intake.domain.staff import (
    QualificationPeriod,
    check_interest_disclosed,
    check_qualified,
)
from branchline_intake.domain.violations import D05, refuse
from branchline_shared.events.catalogue import (
    DisclosureItem,
    EventPayload,
    ProductCategory,
    ProductEvent,
    ProductRecommended,
    ProductRisk,
    ProductRiskDisclosed,
    ProductSold,
    ProductTerms,
    ProductTermsConfirmed,
)


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A risk disclosure of the product (D-05)."""

    event_id: uuid.UUID
    at: datetime
    acknowledged: bool
    product_risk: ProductRisk | None
    items: frozenset[DisclosureItem] = frozenset(DisclosureItem)
    holding_period: str | None = None


@dataclass(frozen=True, slots=True)
class TermsConfirmation:
    """The client's confirmation of the terms (D-05)."""

    event_id: uuid.UUID
    at: datetime
    terms: ProductTerms | None = None


@dataclass(frozen=True, slots=True)
class Sale:
    """A completed sale and what it relied on (the as-of proof)."""

    event_id: uuid.UUID
    at: datetime
    amount: Decimal
    product_risk: ProductRisk | None
    identity_event_id: uuid.UUID | None
    assessment_event_id: uuid.UUID | None
    disclosure_event_id: uuid.UUID | None
    terms_event_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class ProductSale:
    """One product as offered to and bought by this client."""

    product_id: str
    product_risk: ProductRisk | None = None
    """The highest risk level any event of this client stated for the product."""
    disclosures: tuple[Disclosure, ...] = ()
    """Disclosures since the last sale (a sale consumes them)."""
    confirmations: tuple[TermsConfirmation, ...] = ()
    """Terms confirmations since the last sale (a sale consumes them)."""
    sales: tuple[Sale, ...] = ()

    def apply(self, event: DomainEvent) -> ProductSale:
        payload = event.payload
        match payload:
            case ProductRecommended():
                return replace(self, product_risk=_higher(self.product_risk, payload.product_risk))
            case ProductRiskDisclosed():
                disclosure = Disclosure(
                    event.event_id,
                    event.occurred_at,
                    payload.acknowledged,
                    payload.product_risk,
                    frozenset(payload.items),
                    payload.holding_period,
                )
                return replace(
                    self,
                    product_risk=_higher(self.product_risk, payload.product_risk),
                    disclosures=(*self.disclosures, disclosure),
                )
            case ProductTermsConfirmed():
                confirmation = TermsConfirmation(event.event_id, event.occurred_at, payload.terms)
                return replace(self, confirmations=(*self.confirmations, confirmation))
            case ProductSold():
                return self._sold(event, payload)
            case _:
                return self

    def _sold(self, event: DomainEvent, payload: ProductSold) -> ProductSale:
        sale = Sale(
            event.event_id,
            event.occurred_at,
            payload.amount,
            payload.product_risk,
            payload.relied_on_identity_event_id,
            payload.relied_on_assessment_event_id,
            payload.relied_on_disclosure_event_id,
            payload.relied_on_terms_event_id,
        )
        return replace(
            self,
            product_risk=_higher(self.product_risk, payload.product_risk),
            disclosures=(),
            confirmations=(),
            sales=(*self.sales, sale),
        )

    def disclosure_at(self, at: datetime) -> Disclosure | None:
        """The latest disclosure made by ``at`` (since the last sale)."""
        made = [d for d in self.disclosures if d.at <= at]
        return max(made, key=lambda d: d.at) if made else None

    def confirmation_at(self, at: datetime) -> TermsConfirmation | None:
        """The latest terms confirmation made by ``at`` (since the last sale)."""
        made = [c for c in self.confirmations if c.at <= at]
        return max(made, key=lambda c: c.at) if made else None


def _higher(known: ProductRisk | None, stated: ProductRisk | None) -> ProductRisk | None:
    if known is None:
        return stated
    if stated is None:
        return known
    return stated if stated.rank > known.rank else known


def apply_product_event(
    products: Mapping[str, ProductSale], event: DomainEvent
) -> Mapping[str, ProductSale]:
    """The products after ``event``; the first event naming a product creates it."""
    payload = event.payload
    if not isinstance(payload, ProductEvent):
        return products
    current = products.get(payload.product_id) or ProductSale(payload.product_id)
    return {**products, payload.product_id: current.apply(event)}


# --- guards -------------------------------------------------------------------------------------


def check_product_event(
    products: Mapping[str, ProductSale],
    client: Client,
    event: DomainEvent,
    policy: IntakePolicy,
    related: Related,
    approval: LateEntryApproval | None = None,
) -> EventPayload:
    """D-03, D-05, D-13, D-14, D-16; returns the payload to record (with the shelf's rating
    filled in; a sale with its as-of proof)."""
    payload = event.payload
    assert isinstance(payload, ProductEvent)
    at = event.occurred_at
    shelf = related.products.get(payload.product_id)
    rating = check_on_shelf(shelf, payload.product_id, at)
    assert shelf is not None
    if isinstance(payload, ProductRecommended):
        check_stated_risk(payload.product_id, payload.product_risk, rating, "recommendation")
        return check_recommendation(client, event, payload, shelf, rating, policy, related)
    if isinstance(payload, ProductRiskDisclosed):
        check_stated_risk(payload.product_id, payload.product_risk, rating, "disclosure")
        check_itemised(payload.product_id, payload.items, payload.holding_period)
        return payload
    if isinstance(payload, ProductTermsConfirmed):
        check_terms_named(payload.product_id, payload.terms, shelf.category)
        return payload
    if isinstance(payload, ProductSold):
        check_stated_risk(payload.product_id, payload.product_risk, rating, "sale")
        product = products.get(payload.product_id) or ProductSale(payload.product_id)
        return check_sale(product, client, event, payload, shelf, rating, policy, related, approval)
    return payload


def _actor(event: DomainEvent) -> str:
    return event.actor_id or "unknown"


def _check_seller(
    event: DomainEvent, shelf: ShelfProduct, related: Related, what: str
) -> QualificationPeriod:
    actor = _actor(event)
    assert shelf.category is not None
    return check_qualified(related.staff.get(actor), actor, shelf.category, event.occurred_at, what)


def check_recommendation(
    client: Client,
    event: DomainEvent,
    payload: ProductRecommended,
    shelf: ShelfProduct,
    rating: Rating,
    policy: IntakePolicy,
    related: Related,
) -> ProductRecommended:
    """D-13 eligibility, D-14 qualified, D-16 interest disclosed, D-05 ``R <= C``."""
    at = event.occurred_at
    check_eligible(shelf, client.client_type)
    _check_seller(event, shelf, related, "a recommendation")
    actor = _actor(event)
    check_interest_disclosed(
        related.staff.get(actor), actor, payload.product_id, payload.interest_disclosed, at
    )
    assessment = check_assessment_valid(client, at, policy)
    check_within_tolerance(payload.product_id, rating.risk, assessment)
    if payload.product_risk is rating.risk:
        return payload
    return payload.model_copy(update={"product_risk": rating.risk})


def check_within_tolerance(product_id: str, risk: ProductRisk, assessment: Assessment) -> None:
    """D-05: the product's risk R1..R5 must not exceed the client's tolerance C1..C5."""
    if risk.rank > assessment.level.rank:
        raise refuse(
            D05,
            "Product risk above the client's tolerance",
            f"product {product_id!r} is {risk.value}, the client's assessment "
            f"{assessment.event_id} allows up to {assessment.level.value}",
            field="data.product_risk",
        )


def check_itemised(
    product_id: str,
    items: frozenset[DisclosureItem] | tuple[DisclosureItem, ...],
    period: str | None,
) -> None:
    """D-05: a disclosure covers risks, returns, fees and the holding period (stated)."""
    missing = [i.value for i in DisclosureItem if i not in items]
    if missing:
        raise refuse(
            D05,
            "Disclosure incomplete",
            f"product {product_id!r}: the disclosure misses {', '.join(missing)}",
            field="data.items",
        )
    if period is None:
        raise refuse(
            D05,
            "Holding period not stated",
            f"product {product_id!r}: the suitable holding period told to the client is missing",
            field="data.holding_period",
        )


def missing_terms(terms: ProductTerms, category: ProductCategory | None) -> list[str]:
    """D-05: the named terms a confirmation lacks."""
    missing = [name for name in ("period", "fees") if getattr(terms, name) is None]
    if terms.rate is None and terms.expected_return is None:
        missing.append("rate or expected_return")
    if category is ProductCategory.LOAN and terms.repayment is None:
        missing.append("repayment")
    return missing


def check_terms_named(
    product_id: str, terms: ProductTerms | None, category: ProductCategory | None
) -> None:
    """D-05: the confirmed terms name period, fees, rate or expected return (and repayment
    for a loan)."""
    missing = missing_terms(terms or ProductTerms(), category)
    if missing:
        raise refuse(
            D05,
            "Terms incomplete",
            f"product {product_id!r}: the confirmed terms miss {', '.join(missing)}",
            field="data.terms",
        )


def check_sale(
    product: ProductSale,
    client: Client,
    event: DomainEvent,
    payload: ProductSold,
    shelf: ShelfProduct,
    rating: Rating,
    policy: IntakePolicy,
    related: Related,
    approval: LateEntryApproval | None = None,
) -> ProductSold:
    """D-03, D-05, D-13, D-14 for a sale; returns the sale with its as-of proof filled in."""
    at = event.occurred_at
    diligence = check_due_diligence(client, at, policy, "a product sale")
    check_eligible(shelf, client.client_type)
    qualification = _check_seller(event, shelf, related, "a sale")
    assessment = check_assessment_valid(client, at, policy)
    check_within_tolerance(product.product_id, rating.risk, assessment)
    disclosure = check_disclosed(product, rating.risk, at)
    confirmation = check_terms_confirmed(product, at, shelf.category)
    return payload.model_copy(
        update={
            "product_risk": rating.risk,
            "relied_on_identity_event_id": diligence.identity_event_id,
            "relied_on_screening_event_id": diligence.screening_event_id,
            "relied_on_assessment_event_id": assessment.event_id,
            "relied_on_disclosure_event_id": disclosure.event_id,
            "relied_on_terms_event_id": confirmation.event_id,
            "relied_on_rating_event_id": rating.event_id,
            "relied_on_qualification_event_id": qualification.event_id,
            "relied_on_late_entry_approval_event_id": approval.event_id if approval else None,
            "received_at": event.received_at,
        }
    )


def check_disclosed(product: ProductSale, risk: ProductRisk, at: datetime) -> Disclosure:
    """D-05: an acknowledged, itemised disclosure of the product, at its true risk level,
    before the sale (and after any previous sale of it)."""
    disclosure = product.disclosure_at(at)
    where = f"product {product.product_id!r}"
    if disclosure is None:
        raise refuse(D05, "Risks not disclosed", f"{where}: product.risk_disclosed comes first")
    if not disclosure.acknowledged:
        raise refuse(
            D05,
            "Risk disclosure not acknowledged",
            f"{where}: the client did not acknowledge disclosure {disclosure.event_id}",
        )
    check_itemised(product.product_id, disclosure.items, disclosure.holding_period)
    stated = disclosure.product_risk
    if stated is not None and stated.rank < risk.rank:
        raise refuse(
            D05,
            "Disclosure understated the risk",
            f"{where}: disclosure {disclosure.event_id} stated {stated.value}, "
            f"the product is {risk.value}",
        )
    return disclosure


def check_terms_confirmed(
    product: ProductSale, at: datetime, category: ProductCategory | None = None
) -> TermsConfirmation:
    """D-05: the client confirmed the named terms before the sale (and after any previous
    sale)."""
    confirmation = product.confirmation_at(at)
    if confirmation is None:
        raise refuse(
            D05,
            "Terms not confirmed",
            f"product {product.product_id!r}: product.terms_confirmed comes first",
        )
    check_terms_named(product.product_id, confirmation.terms, category)
    return confirmation

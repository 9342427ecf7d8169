"""The product-sale sub-aggregate, one per ``product_id`` offered to the client (D-05, D-03).

A recommendation needs a risk assessment valid at its time and ``R <= C``. A sale needs, at its
time: a verified identity (D-03), a valid assessment and ``R <= C``, an acknowledged risk
disclosure and a terms confirmation of that product (D-05). Each sale consumes the disclosure
and confirmation it relied on: the next sale of the same product (a top-up) needs fresh ones,
because the client confirms their will again before every contract (签署合同前再次确认).

The as-of proof: intake writes into the sale the event ids of the identity verification, the
assessment, the disclosure and the confirmation it relied on, and the product risk it checked.
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
    check_identity_verified,
)
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.policy import IntakePolicy
from branchline_intake.domain.violations import D05, refuse
from branchline_shared.events.catalogue import (
    EventPayload,
    ProductEvent,
    ProductRecommended,
    ProductRisk,
    ProductRiskDisclosed,
    ProductSold,
    ProductTermsConfirmed,
)


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A risk disclosure of the product (D-05)."""

    event_id: uuid.UUID
    at: datetime
    acknowledged: bool
    product_risk: ProductRisk | None


@dataclass(frozen=True, slots=True)
class TermsConfirmation:
    """The client's confirmation of the terms (D-05)."""

    event_id: uuid.UUID
    at: datetime


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
    """The highest risk level any event stated for the product (the conservative reading)."""
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
                    event.event_id, event.occurred_at, payload.acknowledged, payload.product_risk
                )
                return replace(
                    self,
                    product_risk=_higher(self.product_risk, payload.product_risk),
                    disclosures=(*self.disclosures, disclosure),
                )
            case ProductTermsConfirmed():
                confirmation = TermsConfirmation(event.event_id, event.occurred_at)
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
) -> EventPayload:
    """D-05 (and D-03 for sales); returns the payload to record (a sale gains its proof)."""
    payload = event.payload
    if isinstance(payload, ProductRecommended):
        check_recommendation(client, payload, event.occurred_at, policy)
    elif isinstance(payload, ProductSold):
        product = products.get(payload.product_id) or ProductSale(payload.product_id)
        return check_sale(product, client, payload, event.occurred_at, policy)
    return payload


def check_recommendation(
    client: Client, payload: ProductRecommended, at: datetime, policy: IntakePolicy
) -> None:
    """D-05: recommend only with a valid assessment and ``R <= C``."""
    assessment = check_assessment_valid(client, at, policy)
    check_within_tolerance(payload.product_id, payload.product_risk, assessment)


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


def check_sale(
    product: ProductSale,
    client: Client,
    payload: ProductSold,
    at: datetime,
    policy: IntakePolicy,
) -> ProductSold:
    """D-03, D-05 for a sale; returns the sale with its as-of proof filled in."""
    identity_id = check_identity_verified(client, at, "a product sale")
    assessment = check_assessment_valid(client, at, policy)
    risk = sale_risk(product, payload)
    check_within_tolerance(product.product_id, risk, assessment)
    disclosure = check_disclosed(product, risk, at)
    confirmation = check_terms_confirmed(product, at)
    return payload.model_copy(
        update={
            "product_risk": risk,
            "relied_on_identity_event_id": identity_id,
            "relied_on_assessment_event_id": assessment.event_id,
            "relied_on_disclosure_event_id": disclosure.event_id,
            "relied_on_terms_event_id": confirmation.event_id,
        }
    )


def sale_risk(product: ProductSale, payload: ProductSold) -> ProductRisk:
    """D-05: the product's risk level for a sale: the one the sale states, which may not be
    lower than a level recommended or disclosed before; else the known one."""
    known, stated = product.product_risk, payload.product_risk
    if stated is not None and known is not None and stated.rank < known.rank:
        raise refuse(
            D05,
            "Product risk understated",
            f"the sale states {stated.value}, product {product.product_id!r} was recommended "
            f"or disclosed as {known.value}",
            field="data.product_risk",
        )
    risk = _higher(known, stated)
    if risk is None:
        raise refuse(
            D05,
            "Product risk unknown",
            f"product {product.product_id!r} has no risk level: state product_risk, or "
            "recommend or disclose the product with it",
            field="data.product_risk",
        )
    return risk


def check_disclosed(product: ProductSale, risk: ProductRisk, at: datetime) -> Disclosure:
    """D-05: an acknowledged disclosure of the product, at its true risk level, before the
    sale (and after any previous sale of it)."""
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
    stated = disclosure.product_risk
    if stated is not None and stated.rank < risk.rank:
        raise refuse(
            D05,
            "Disclosure understated the risk",
            f"{where}: disclosure {disclosure.event_id} stated {stated.value}, "
            f"the product is {risk.value}",
        )
    return disclosure


def check_terms_confirmed(product: ProductSale, at: datetime) -> TermsConfirmation:
    """D-05: the client confirmed the terms before the sale (and after any previous sale)."""
    confirmation = product.confirmation_at(at)
    if confirmation is None:
        raise refuse(
            D05,
            "Terms not confirmed",
            f"product {product.product_id!r}: product.terms_confirmed comes first",
        )
    return confirmation

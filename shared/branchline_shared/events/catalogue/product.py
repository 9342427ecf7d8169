"""Events of a product offered to a client: recommendation, disclosure, terms, sale (D-05)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar

from pydantic import (
    Field,
    StrictBool,
    model_validator,
)
from pydantic_core import PydanticCustomError

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    PayloadPart,
    ProductEvent,
)
from branchline_shared.events.catalogue.checks import unique
from branchline_shared.events.catalogue.scalars import (
    Amount,
    CurrencyCode,
    Label,
    TermKey,
    TermValue,
)
from branchline_shared.events.envelope import Identifier
from branchline_shared.events.vocabulary import (
    DisclosureItem,
    ProductRisk,
)


class ProductRecommended(ProductEvent):
    """product.recommended (D-05, D-13, D-14, D-16): refused for a product not on sale, by
    staff not qualified for its category or with an interest not disclosed to the client,
    without a valid assessment or above tolerance. The risk is the shelf's rating in force;
    a stated ``product_risk`` must agree with it."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("product_name",)

    product_risk: ProductRisk | None = None
    product_name: Label | None = None
    interest_disclosed: StrictBool | None = None
    """D-16: the recommending staff told the client of their declared interest in the
    product (required true when they declared one)."""


class ProductRiskDisclosed(ProductEvent):
    """product.risk_disclosed (D-05), schema version 2: an itemised disclosure. ``items``
    names what was disclosed (risks, returns, fees, holding_period: all four are required
    for a sale), ``holding_period`` the suitable holding period told to the client, and
    ``acknowledged`` the client's acknowledgement of each item."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("holding_period",)

    SCHEMA_VERSION: ClassVar[int] = 2

    acknowledged: StrictBool
    items: Annotated[
        tuple[DisclosureItem, ...], Field(max_length=len(DisclosureItem)), unique("items")
    ]
    holding_period: Label | None = None
    product_risk: ProductRisk | None = None
    """The risk level stated in the disclosure, if it was stated."""


class ProductTerms(PayloadPart):
    """D-05: the terms as shown to the client (strings, as shown). A sale needs ``period``,
    ``fees`` and ``rate`` or ``expected_return`` (and ``repayment`` for a loan); anything
    else shown goes under ``other``."""

    rate: TermValue | None = None
    expected_return: TermValue | None = None
    period: TermValue | None = None
    fees: TermValue | None = None
    repayment: TermValue | None = None
    other: Annotated[dict[TermKey, TermValue], Field(max_length=50)] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _named_terms_only(cls, value: Any) -> Any:
        # Refused without naming the key: the caller's text may be personal (D-04).
        if isinstance(value, dict) and set(value) - set(cls.model_fields):
            raise PydanticCustomError(
                "extra_forbidden",
                "unknown term: name it rate, expected_return, period, fees or repayment, "
                "or put it under other",
            )
        return value


class ProductTermsConfirmed(ProductEvent):
    """product.terms_confirmed (D-05), schema version 2: the named terms the client
    confirmed before signing (签署合同前再次确认)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = (
        "terms.rate",
        "terms.expected_return",
        "terms.period",
        "terms.fees",
        "terms.repayment",
        "terms.other",
    )  # the values as shown to the client (free text); which terms were shown stays readable

    terms: ProductTerms


class ProductSold(ProductEvent):
    """product.sold (D-03, D-05). The ``relied_on_*`` fields are the as-of proof: intake fills
    them with the ids of the events the sale relied on (any value a caller sends is replaced),
    so an auditor can show what the firm knew at the moment of sale. ``product_risk`` is filled
    from the product's recommendation or disclosure when the caller does not state it."""

    amount: Amount
    currency: CurrencyCode | None = None
    product_risk: ProductRisk | None = None
    contract_id: Identifier | None = None
    relied_on_identity_event_id: uuid.UUID | None = None
    relied_on_assessment_event_id: uuid.UUID | None = None
    relied_on_disclosure_event_id: uuid.UUID | None = None
    relied_on_terms_event_id: uuid.UUID | None = None
    relied_on_rating_event_id: uuid.UUID | None = None
    """D-13: the shelf event whose rating was in force at the sale."""
    relied_on_qualification_event_id: uuid.UUID | None = None
    """D-14: the qualification of the selling staff in force at the sale."""
    relied_on_screening_event_id: uuid.UUID | None = None
    """D-03: the clear screening result in force at the sale."""
    relied_on_late_entry_approval_event_id: uuid.UUID | None = None
    """D-05b: the supervisor's approval of a late entry."""
    received_at: Instant | None = None
    """D-05b: when intake received the sale (its ``occurred_at`` is when it happened)."""

"""Events of the product shelf (D-13): approval, rating, suspension, withdrawal."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import (
    Field,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    PayloadPart,
    ProductGovernanceEvent,
)
from branchline_shared.events.catalogue.checks import unique
from branchline_shared.events.catalogue.scalars import (
    Label,
)
from branchline_shared.events.vocabulary import (
    ClientType,
    ProductCategory,
    ProductRisk,
)


class ProductRiskFactors(PayloadPart):
    """D-13: the factors behind a product's rating."""

    market: ProductRisk | None = None
    credit: ProductRisk | None = None
    liquidity: ProductRisk | None = None


class ProductApproved(ProductGovernanceEvent):
    """product.approved (D-13): the institution puts a product on its shelf, on sale, with its
    own risk rating in force from ``occurred_at``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("name",)

    name: Label
    category: ProductCategory
    risk: ProductRisk
    risk_factors: ProductRiskFactors | None = None
    eligible_client_types: Annotated[
        tuple[ClientType, ...], Field(min_length=1), unique("eligible_client_types")
    ]


class ProductRerated(ProductGovernanceEvent):
    """product.rerated (D-13, D-15): a new rating in force from ``effective_at``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    risk: ProductRisk
    effective_at: Instant
    reason: Label
    risk_factors: ProductRiskFactors | None = None


class ProductSuspended(ProductGovernanceEvent):
    """product.suspended (D-13): no recommendation or sale until resumed by a new approval."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label


class ProductWithdrawn(ProductGovernanceEvent):
    """product.withdrawn (D-13): off the shelf for good."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label

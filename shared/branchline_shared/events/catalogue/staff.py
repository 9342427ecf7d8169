"""Events of a member of staff (D-14, D-16): qualifications, training, interests, gifts."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import (
    Field,
    StrictBool,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    StaffEvent,
)
from branchline_shared.events.catalogue.scalars import (
    Label,
)
from branchline_shared.events.envelope import Identifier
from branchline_shared.events.vocabulary import (
    ProductCategory,
)


class StaffQualified(StaffEvent):
    """staff.qualified (D-14): a qualification for one product category, valid from
    ``occurred_at`` (or ``valid_from``) until ``valid_until``."""

    category: ProductCategory
    certificate_id: Identifier
    valid_until: Instant
    valid_from: Instant | None = None


class StaffQualificationRenewed(StaffEvent):
    """staff.qualification_renewed (D-14): the qualification of ``category`` extended."""

    category: ProductCategory
    valid_until: Instant
    certificate_id: Identifier | None = None


class StaffQualificationRevoked(StaffEvent):
    """staff.qualification_revoked (D-14): no longer valid from ``occurred_at``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    category: ProductCategory
    reason: Label


class StaffTrainingRecorded(StaffEvent):
    """staff.training_recorded (D-14): training hours (reference: 40 a year)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("topic",)

    hours: Annotated[Decimal, Field(gt=0, le=1000, max_digits=7, decimal_places=2)]
    topic: Label
    completed_at: Instant


class StaffInterestDeclared(StaffEvent):
    """staff.interest_declared (D-16): a material interest in a product; recommending it then
    needs the interest disclosed to the client."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("nature",)

    product_id: Identifier
    nature: Label


class StaffGiftRecorded(StaffEvent):
    """staff.gift_recorded (D-16): a gift or benefit offered by a client. Accepting one above
    the policy's value (default 0) breaks the policy: it is recorded and escalated."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("description",)

    client_id: Identifier
    value: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=4)]
    accepted: StrictBool
    description: Label

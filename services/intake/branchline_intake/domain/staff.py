"""Staff records (D-14, D-16): qualifications by product category, training, declared
interests and gifts, folded from one member of staff's own stream.

A qualification is valid from ``valid_from`` (default: when recorded) until ``valid_until``;
a renewal adds a period from its own time, a revocation ends every period from its time.
Validity is asked *as of* the time of a recommendation or sale, like every rule here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.violations import D14, D16, refuse
from branchline_shared.events.catalogue import (
    EventPayload,
    ProductCategory,
    StaffGiftRecorded,
    StaffInterestDeclared,
    StaffQualificationRenewed,
    StaffQualificationRevoked,
    StaffQualified,
    StaffTrainingRecorded,
)


@dataclass(frozen=True, slots=True)
class QualificationPeriod:
    """One period of a qualification for a product category."""

    event_id: uuid.UUID
    category: ProductCategory
    certificate_id: str | None
    valid_from: datetime
    valid_until: datetime
    ended_at: datetime | None = None
    """When a revocation ended it early."""

    def valid_at(self, at: datetime) -> bool:
        ends = self.valid_until if self.ended_at is None else min(self.valid_until, self.ended_at)
        return self.valid_from <= at < ends


@dataclass(frozen=True, slots=True)
class Training:
    event_id: uuid.UUID
    hours: Decimal
    topic: str
    completed_at: datetime


@dataclass(frozen=True, slots=True)
class Interest:
    event_id: uuid.UUID
    product_id: str
    nature: str
    declared_at: datetime


@dataclass(frozen=True, slots=True)
class Gift:
    event_id: uuid.UUID
    client_id: str
    value: Decimal
    accepted: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class StaffMember:
    staff_id: str
    periods: tuple[QualificationPeriod, ...] = ()
    training: tuple[Training, ...] = ()
    interests: Mapping[str, Interest] = field(default_factory=dict)
    gifts: tuple[Gift, ...] = ()

    def qualification_at(
        self, category: ProductCategory, at: datetime
    ) -> QualificationPeriod | None:
        """D-14: a period of a qualification for ``category`` valid at ``at``."""
        valid = [p for p in self.periods if p.category is category and p.valid_at(at)]
        return max(valid, key=lambda p: p.valid_until) if valid else None

    def interest_at(self, product_id: str, at: datetime) -> Interest | None:
        """D-16: an interest in ``product_id`` declared by ``at``."""
        interest = self.interests.get(product_id)
        return interest if interest is not None and interest.declared_at <= at else None

    def training_hours(self, year: int) -> Decimal:
        """D-14: the training hours completed in calendar ``year`` (UTC)."""
        return sum(
            (t.hours for t in self.training if t.completed_at.year == year), start=Decimal(0)
        )

    def has_category(self, category: ProductCategory) -> bool:
        return any(p.category is category for p in self.periods)

    def apply(self, event: DomainEvent) -> StaffMember:
        payload = event.payload
        at = event.occurred_at
        match payload:
            case StaffQualified():
                period = QualificationPeriod(
                    event.event_id,
                    payload.category,
                    payload.certificate_id,
                    payload.valid_from or at,
                    payload.valid_until,
                )
                return replace(self, periods=(*self.periods, period))
            case StaffQualificationRenewed():
                latest = self._latest(payload.category)
                period = QualificationPeriod(
                    event.event_id,
                    payload.category,
                    payload.certificate_id or (latest.certificate_id if latest else None),
                    at,
                    payload.valid_until,
                )
                return replace(self, periods=(*self.periods, period))
            case StaffQualificationRevoked():
                periods = tuple(
                    replace(p, ended_at=at)
                    if p.category is payload.category and p.valid_from <= at and p.ended_at is None
                    else p
                    for p in self.periods
                )
                return replace(self, periods=periods)
            case StaffTrainingRecorded():
                training = Training(
                    event.event_id, payload.hours, payload.topic, payload.completed_at
                )
                return replace(self, training=(*self.training, training))
            case StaffInterestDeclared():
                interest = Interest(event.event_id, payload.product_id, payload.nature, at)
                if payload.product_id in self.interests:
                    return self  # the first declaration is the one that counts
                return replace(self, interests={**self.interests, payload.product_id: interest})
            case StaffGiftRecorded():
                gift = Gift(event.event_id, payload.client_id, payload.value, payload.accepted, at)
                return replace(self, gifts=(*self.gifts, gift))
            case _:
                return self

    def _latest(self, category: ProductCategory) -> QualificationPeriod | None:
        periods = [p for p in self.periods if p.category is category]
        return max(periods, key=lambda p: p.valid_from) if periods else None


def rebuild_staff_member(staff_id: str, events: list[DomainEvent]) -> StaffMember:
    member = StaffMember(staff_id)
    for event in events:
        member = member.apply(event)
    return member


# --- guards of the staff records' own events ------------------------------------------------------


def check_staff_event(member: StaffMember, event: DomainEvent) -> EventPayload:
    """D-14: a qualification ends after it starts; only a held qualification is renewed or
    revoked; a renewal extends into the future."""
    payload = event.payload
    at = event.occurred_at
    if isinstance(payload, StaffQualified):
        starts = payload.valid_from or at
        if payload.valid_until <= starts:
            raise refuse(
                D14,
                "Qualification ends before it starts",
                f"valid_until {payload.valid_until.isoformat()} is not after {starts.isoformat()}",
                field="data.valid_until",
            )
    elif isinstance(payload, StaffQualificationRenewed | StaffQualificationRevoked):
        if not member.has_category(payload.category):
            raise refuse(
                D14,
                "No such qualification",
                f"staff {member.staff_id!r} holds no {payload.category.value} qualification: "
                "record staff.qualified first",
                field="data.category",
            )
        if isinstance(payload, StaffQualificationRenewed) and payload.valid_until <= at:
            raise refuse(
                D14,
                "Renewal already expired",
                f"valid_until {payload.valid_until.isoformat()} is not after the renewal",
                field="data.valid_until",
            )
    return payload


# --- what client events need of the staff records -------------------------------------------------


def check_qualified(
    member: StaffMember | None,
    staff_id: str,
    category: ProductCategory,
    at: datetime,
    what: str,
) -> QualificationPeriod:
    """D-14: the actor holds a qualification for the product's category valid at ``at``."""
    period = member.qualification_at(category, at) if member is not None else None
    if period is None:
        raise refuse(
            D14,
            "Staff not qualified",
            f"{what} by {staff_id!r} needs a valid {category.value} qualification at "
            f"{at.isoformat()} (staff.qualified)",
            field="actor.id",
        )
    return period


def check_interest_disclosed(
    member: StaffMember | None,
    staff_id: str,
    product_id: str,
    disclosed: bool | None,
    at: datetime,
) -> None:
    """D-16: staff with a declared interest in the product disclose it to the client."""
    interest = member.interest_at(product_id, at) if member is not None else None
    if interest is not None and disclosed is not True:
        raise refuse(
            D16,
            "Undisclosed interest",
            f"{staff_id!r} declared an interest in product {product_id!r} "
            f"({interest.event_id}): the recommendation must state interest_disclosed true",
            field="data.interest_disclosed",
        )

"""When a client's personal data is destroyed (D-04 erasure, D-11 retention). Pure.

An erasure request restricts the data at once; the data is destroyed (crypto-shredded):

- never while the client is under legal hold;
- at once where no retention applies: the client never did business with the institution
  (a prospect keeps no records a retention rule covers), or the profile keeps nothing;
- otherwise once the retention period of the client's profile (default 10 years) has run,
  counted from the **end of the relationship** (account closure, or churn), never from the
  records' own dates; while the relationship has not ended, not yet.

A member of staff is a data subject too: their own texts (sealed under ``#staff/<id>``) are
destroyed the same way (:func:`staff_shred_plan`), the retention of their records counted
from the end of their employment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from branchline_followup.domain.business_days import require_aware
from branchline_shared.events.catalogue import ShredBasis
from branchline_shared.events.sealing_keys import staff_key_id


def years_after(moment: datetime, years: int) -> datetime:
    """The same calendar instant ``years`` later (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def _no_profiles() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class RetentionRule:
    """The institution's D-11 retention: years per profile, the profile of each branch."""

    years_by_profile: Mapping[str, int]
    default_profile: str = "default"
    branch_profiles: Mapping[str, str] = field(default_factory=_no_profiles)
    legal_holds: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for profile in {self.default_profile, *self.branch_profiles.values()}:
            if profile not in self.years_by_profile:
                raise ValueError(f"retention profile {profile!r} has no period (D-11)")
        if any(years < 0 for years in self.years_by_profile.values()):
            raise ValueError("a retention period cannot be negative (D-11)")

    def years_for(self, branch_id: str | None) -> int:
        profile = self.default_profile
        if branch_id is not None:
            profile = self.branch_profiles.get(branch_id, profile)
        return self.years_by_profile[profile]


@dataclass(frozen=True)
class ErasureCase:
    """What decides when one client's erasure is carried out."""

    client_id: str
    branch_id: str | None
    erasure_event_id: uuid.UUID
    erasure_requested_at: datetime
    had_business: bool
    relationship_ended_at: datetime | None
    """Account closure or churn; ``None`` while the relationship lasts."""
    legal_hold: bool = False


@dataclass(frozen=True)
class ShredPlan:
    basis: ShredBasis
    due_at: datetime
    retention_until: datetime | None


def shred_plan(case: ErasureCase, rule: RetentionRule) -> ShredPlan | None:
    """When ``case`` is to be shredded, and on which basis; ``None``: not (yet) foreseeable
    (legal hold, or the relationship has not ended)."""
    requested = require_aware(case.erasure_requested_at, "erasure_requested_at")
    if case.legal_hold or case.client_id in rule.legal_holds:
        return None
    years = rule.years_for(case.branch_id)
    if not case.had_business or years == 0:
        return ShredPlan(ShredBasis.NO_RETENTION, requested, None)
    if case.relationship_ended_at is None:
        return None
    until = years_after(require_aware(case.relationship_ended_at, "relationship_ended_at"), years)
    return ShredPlan(ShredBasis.RETENTION_ENDED, max(requested, until), until)


def relationship_ended_at(
    *,
    account_closed_at: datetime | None,
    first_business_at: datetime | None,
    last_business_at: datetime | None,
    churn_after_inactivity: timedelta,
    now: datetime,
) -> datetime | None:
    """The end of the relationship as of ``now`` (D-11): the account's closure, else the
    instant the client churned by inactivity (D-09); ``None`` while it lasts."""
    now = require_aware(now, "now")
    if account_closed_at is not None and require_aware(account_closed_at) <= now:
        return require_aware(account_closed_at)
    last = last_business_at or first_business_at
    if last is not None and require_aware(last) + churn_after_inactivity <= now:
        return require_aware(last) + churn_after_inactivity
    return None


@dataclass(frozen=True)
class StaffErasureCase:
    """What decides when a member of staff's own texts are destroyed (D-04, D-11)."""

    staff_id: str
    branch_id: str | None
    erasure_event_id: uuid.UUID
    erasure_requested_at: datetime
    employment_ended_at: datetime | None
    """From the erasure request; ``None`` while they are employed."""
    legal_hold: bool = False


def staff_hold_subjects(staff_id: str, gift_clients: Iterable[str]) -> frozenset[str]:
    """The subjects whose standing legal hold holds a member of staff's own texts (D-11): a
    hold on them directly (named by their key id ``#staff/<staff_id>``), and a hold on any
    client their gift records name (the gift is part of that client's case, D-16)."""
    return frozenset({staff_key_id(staff_id), *gift_clients})


def staff_held(staff_id: str, gift_clients: Iterable[str], held: AbstractSet[str]) -> bool:
    """Whether a standing hold (``held``: the subjects under one) holds the member of staff."""
    return not held.isdisjoint(staff_hold_subjects(staff_id, gift_clients))


def staff_shred_plan(case: StaffErasureCase, rule: RetentionRule) -> ShredPlan | None:
    """When a member of staff's texts are to be shredded; ``None``: not (yet) foreseeable.

    Their records (qualifications, training, interests, gifts: D-14, D-16) are the
    institution's records of its staff's conduct, kept per the profile of their branch from
    the **end of employment** (D-11), as a client's from the end of the relationship; never
    while a legal hold stands, never while they are employed (no end, no date)."""
    requested = require_aware(case.erasure_requested_at, "erasure_requested_at")
    if case.legal_hold:
        return None
    years = rule.years_for(case.branch_id)
    if years == 0:
        return ShredPlan(ShredBasis.NO_RETENTION, requested, None)
    if case.employment_ended_at is None:
        return None
    ended = require_aware(case.employment_ended_at, "employment_ended_at")
    until = years_after(ended, years)
    return ShredPlan(ShredBasis.RETENTION_ENDED, max(requested, until), until)

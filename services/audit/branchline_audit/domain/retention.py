"""Retention of the audit trail (D-11): how long an entry's payload must be kept.

Each entry falls under the retention profile of its branch (or the institution's profile);
a profile names a number of years (reference figures: China AML 10 years after the relationship
ends, SEC 17a-4 6 years, MiFID II 5; default 10).

A client's records are counted from the **end of the relationship** (the client's account
closure recorded in the ledger, see :mod:`.relationships`), never from each record's own date:
a client who is still a client is never pruned, however old their records. A client under a
standing legal hold (recorded ``audit.legal_hold_placed``, not lifted) is never pruned. Entries
without a client (the audit service's own records) are counted from ``appended_at``, the
ledger's own time, which is part of the hash and so cannot be moved without detection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


class RetentionError(ValueError):
    """A retention configuration or request that cannot be honoured (rule D-11)."""

    rule = "D-11"


def years_before(moment: datetime, years: int) -> datetime:
    """The same calendar instant ``years`` earlier (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


@dataclass(frozen=True)
class RetentionPolicy:
    years_by_profile: Mapping[str, int]
    default_profile: str = "default"
    branch_profiles: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for profile in {self.default_profile, *self.branch_profiles.values()}:
            if profile not in self.years_by_profile:
                raise RetentionError(
                    f"retention profile {profile!r} has no period (known: "
                    f"{sorted(self.years_by_profile)}) (D-11)"
                )
        for profile, years in self.years_by_profile.items():
            if years < 1:
                raise RetentionError(f"retention profile {profile!r} must keep at least a year")

    def profile_for(self, branch_id: str | None) -> str:
        if branch_id is not None and branch_id in self.branch_profiles:
            return self.branch_profiles[branch_id]
        return self.default_profile

    def cutoff(self, profile: str, now: datetime) -> datetime:
        """Entries appended before this instant are past retention under ``profile``."""
        return years_before(now.astimezone(UTC), self.years_by_profile[profile])

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """The cutoff of every profile in use."""
        used = {self.default_profile, *self.branch_profiles.values()}
        return {profile: self.cutoff(profile, now) for profile in sorted(used)}

    def expired(self, *, appended_at: datetime, branch_id: str | None, now: datetime) -> bool:
        """An entry without a client: past retention counted from its own append time."""
        return appended_at < self.cutoff(self.profile_for(branch_id), now)

    def client_record_expired(
        self, *, relationship_end: datetime | None, branch_id: str | None, now: datetime
    ) -> bool:
        """A client's record: past retention counted from the end of the relationship (never,
        while the relationship lasts)."""
        if relationship_end is None:
            return False
        return relationship_end < self.cutoff(self.profile_for(branch_id), now)


@dataclass(frozen=True)
class ClientRetentionState:
    """What the ledger says of the clients, for one prune: relationship ends and holds."""

    relationship_ends: Mapping[str, datetime] = field(default_factory=dict)
    held: frozenset[str] = frozenset()

    def is_held(self, client_id: str | None) -> bool:
        return client_id is not None and client_id in self.held

"""Retention of the audit trail (D-11): how long an entry's payload must be kept.

Each entry falls under the retention profile of its branch (or the institution's profile);
a profile names a number of years (reference figures in DOMAIN.md D-11; default 10). The age of
an entry is counted from ``appended_at``, the ledger's own time, which is part of the hash and
so cannot be moved without detection. Clients under legal hold are never pruned.
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
    legal_holds: frozenset[str] = frozenset()

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

    def is_held(self, client_id: str | None) -> bool:
        return client_id is not None and client_id in self.legal_holds

    def expired(self, *, appended_at: datetime, branch_id: str | None, now: datetime) -> bool:
        return appended_at < self.cutoff(self.profile_for(branch_id), now)

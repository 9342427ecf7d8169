"""Settings more than one service reads, named for what they configure (not for a service).

Each section is a part of :class:`CommonSettings` that the per-service classes compose; a
service's class holds exactly the sections it reads.
"""

from __future__ import annotations

import base64
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from branchline_shared.events.vocabulary import IdentityMethod
from branchline_shared.settings.common import DEV_POSTGRES_PORT, CommonSettings, read_secret_file
from branchline_shared.settings.renamed import renamed


class PersonalDataSettings(CommonSettings):
    """Personal data sealed per client (ADR-0007): intake and followup."""

    keys_database_url: str = Field(
        default=f"postgresql://postgres@127.0.0.1:{DEV_POSTGRES_PORT}/branchline_keys",
        description="The clients' wrapped data keys (ADR-0007), shared by intake and followup.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="The master key wrapping every client's data key, base64 of 32 bytes; "
        "default: <data_dir>/secrets/master-key, which the dev stack generates.",
    )
    master_keys_previous: list[SecretStr] = Field(
        default_factory=list,
        description="Master keys being rotated away from (JSON list of base64), still accepted "
        "to unwrap data keys until `branchline privacy rotate-master-key` re-wrapped them all.",
    )

    @model_validator(mode="after")
    def _refuse_missing_master_key(self) -> PersonalDataSettings:
        if self.environment == "production" and self.master_key is None:
            raise ValueError("BRANCHLINE_MASTER_KEY must be set in production")
        return self

    @property
    def master_key_file(self) -> Path:
        return self.secrets_dir / "master-key"

    def resolved_master_key(self) -> bytes:
        """The 32-byte master key: from settings, or the one the dev stack generated."""
        if self.master_key is not None:
            encoded = self.master_key.get_secret_value()
        else:
            encoded = read_secret_file(self.master_key_file, "master_key")
        raw = base64.b64decode(encoded)
        if len(raw) != 32:
            raise ValueError("the master key must be base64 of exactly 32 bytes")
        return raw


class ClientLifecycleSettings(CommonSettings):
    """D-09: when a client is new, churned or high net worth (followup derives the stage)."""

    lifecycle_new_client_days: int = Field(
        default=90,
        ge=1,
        validation_alias=renamed("lifecycle_new_client_days", "intake_new_client_days"),
        description="D-09: a client is `new` this long after onboarding.",
    )
    lifecycle_churn_after_days: int = Field(
        default=365,
        ge=1,
        validation_alias=renamed("lifecycle_churn_after_days", "intake_churn_after_days"),
        description="D-09: `churned` after this long without business.",
    )
    lifecycle_high_net_worth_threshold: int = Field(
        default=6_000_000,
        gt=0,
        validation_alias=renamed(
            "lifecycle_high_net_worth_threshold", "intake_high_net_worth_threshold"
        ),
        description="D-09: assets under management for high_net_worth.",
    )


class AssessmentSettings(CommonSettings):
    """D-05: how long a risk assessment stands (intake enforces it, followup's pages show it)."""

    assessment_validity_months: int = Field(
        default=12,
        ge=1,
        validation_alias=renamed("assessment_validity_months", "intake_assessment_validity_months"),
        description="D-05: validity of a risk assessment without valid_until.",
    )


class IdentityGateSettings(CommonSettings):
    """D-03: the identity checks that count (intake's gate, followup's KYC refresh)."""

    identity_gate_methods: list[IdentityMethod] = Field(
        default_factory=lambda: [IdentityMethod.NETWORKED_ID_CHECK],
        min_length=1,
        validation_alias=renamed("identity_gate_methods", "intake_identity_gate_methods"),
        description="D-03: identity verification methods that open the gate for account "
        "opening, sales and contracts, and count as due diligence for the KYC refresh "
        "(networked_id_check, in_person, video), JSON.",
    )


class StaffSettings(CommonSettings):
    """Who supervises whom (D-08 escalations; supervisors see their team, intake and followup)."""

    staff_supervisors: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=renamed("staff_supervisors", "followup_supervisors"),
        description="Staff (RM) id -> supervisor id, JSON: who receives escalations (D-08).",
    )
    staff_default_supervisor: str = Field(
        default="supervisor",
        min_length=1,
        validation_alias=renamed("staff_default_supervisor", "followup_default_supervisor"),
        description="Supervisor of staff not in staff_supervisors.",
    )


class CalendarSettings(CommonSettings):
    """The branches' business-day calendars (D-07): followup's clocks, audit's pages."""

    calendar_default_timezone: str = Field(
        default="UTC",
        validation_alias=renamed("calendar_default_timezone", "followup_default_timezone"),
        description="IANA zone of the business-day calendar (D-07).",
    )
    calendar_branch_timezones: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=renamed("calendar_branch_timezones", "followup_branch_timezones"),
        description="Branch id -> IANA zone, where it differs, JSON.",
    )
    calendar_holidays: list[date] = Field(
        default_factory=list,
        validation_alias=renamed("calendar_holidays", "followup_holidays"),
        description="Non-business days of every branch (D-07), JSON.",
    )
    calendar_branch_holidays: dict[str, list[date]] = Field(
        default_factory=dict,
        validation_alias=renamed("calendar_branch_holidays", "followup_branch_holidays"),
        description="Branch id -> its own non-business days, JSON.",
    )

    @field_validator("calendar_default_timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        return _known_timezone(zone)

    @field_validator("calendar_branch_timezones")
    @classmethod
    def _known_zones(cls, zones: dict[str, str]) -> dict[str, str]:
        for zone in zones.values():
            _known_timezone(zone)
        return zones


def _known_timezone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {zone!r}") from None
    return zone


class RetentionSettings(CommonSettings):
    """D-11 retention: what the audit trail prunes by and what erasure waits for."""

    retention_profile: str = Field(
        default="default",
        validation_alias=renamed("retention_profile", "audit_retention_profile"),
        description="The institution's retention profile (D-11).",
    )
    retention_years: dict[str, int] = Field(
        default_factory=lambda: {
            "default": 10,
            "cn_aml": 10,
            "us_sec_17a4": 6,
            "eu_mifid_ii": 5,
        },
        validation_alias=renamed("retention_years", "audit_retention_years"),
        description="Retention period in years per profile (D-11; default 10 years).",
    )
    retention_branch_profiles: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=renamed("retention_branch_profiles", "audit_branch_retention_profiles"),
        description="Branch id -> retention profile, where it differs.",
    )
    retention_legal_hold_clients: list[str] = Field(
        default_factory=list,
        validation_alias=renamed("retention_legal_hold_clients", "audit_legal_hold_clients"),
        description="Migration aid only: `branchline audit holds import-settings` records a "
        "legal hold for each listed client; retention reads only recorded holds (D-11).",
    )

    @field_validator("retention_years")
    @classmethod
    def _positive_years(cls, years: dict[str, int]) -> dict[str, int]:
        short = sorted(profile for profile, n in years.items() if n < 1)
        if short:
            raise ValueError(f"retention profiles of less than a year: {short}")
        return years

    @model_validator(mode="after")
    def _known_retention_profiles(self) -> RetentionSettings:
        named = {self.retention_profile, *self.retention_branch_profiles.values()}
        unknown = sorted(named - set(self.retention_years))
        if unknown:
            raise ValueError(
                f"retention profiles {unknown} have no period in retention_years "
                f"(known: {sorted(self.retention_years)})"
            )
        return self

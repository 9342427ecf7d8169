"""Settings (ADR-0009): a common part, shared sections named for what they configure, one class
per service, and :class:`BranchlineSettings` composing them for the CLI and the dev stack."""

from branchline_shared.settings.audit import AuditSettings
from branchline_shared.settings.common import (
    PLACEHOLDER_SECRETS,
    CommonSettings,
    MissingSecretError,
)
from branchline_shared.settings.composed import BranchlineSettings
from branchline_shared.settings.followup import FollowupDeadline, FollowupSettings
from branchline_shared.settings.intake import IntakeSettings
from branchline_shared.settings.renamed import FORMER_NAMES
from branchline_shared.settings.sections import (
    CalendarSettings,
    ClientLifecycleSettings,
    IdentityGateSettings,
    PersonalDataSettings,
    RetentionSettings,
    StaffSettings,
)

__all__ = [
    "FORMER_NAMES",
    "PLACEHOLDER_SECRETS",
    "AuditSettings",
    "BranchlineSettings",
    "CalendarSettings",
    "ClientLifecycleSettings",
    "CommonSettings",
    "FollowupDeadline",
    "FollowupSettings",
    "IdentityGateSettings",
    "IntakeSettings",
    "MissingSecretError",
    "PersonalDataSettings",
    "RetentionSettings",
    "StaffSettings",
]

"""Client events: registration, identity (KYC), risk, screening, beneficial owners,
late-entry approval, closing and reopening the account (D-03, D-05, D-05b, D-09, D-11)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import (
    Field,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    EventPayload,
)
from branchline_shared.events.catalogue.scalars import (
    DateOrTime,
    Label,
    Note,
    PersonalValue,
)
from branchline_shared.events.envelope import Identifier
from branchline_shared.events.vocabulary import (
    AccountClosureReason,
    AccountReopeningReason,
    ClientType,
    DocumentType,
    IdentityMethod,
    PersonalField,
    RiskTolerance,
    ScreeningResult,
)


class ClientRegistered(EventPayload):
    """client.registered (D-09: the client's type and owning RM)."""

    client_type: ClientType
    rm_id: Identifier


class ClientIdentityVerified(EventPayload):
    """client.identity_verified (D-03). Only the configured methods open the gate (default
    ``networked_id_check``); the others are recorded. A verification stops counting when its
    document expires (``document_expires_at``: an RFC 3339 time, or a date meaning the start
    of that day in UTC)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("verification_ref",)

    method: IdentityMethod
    document_type: DocumentType
    verification_ref: Identifier | None = None
    """Reference of the check in the networked verification system, if any."""
    document_expires_at: DateOrTime | None = None


class ClientRiskAssessed(EventPayload):
    """client.risk_assessed (D-05). Without ``valid_until`` intake fills in the policy's
    default validity (12 months), so the stored event states its own validity."""

    level: RiskTolerance
    valid_until: Instant | None = None


class ClientScreened(EventPayload):
    """client.screened (D-03): an AML / sanctions screening result; a client whose latest
    result is ``hit`` or ``pending`` can neither open an account nor buy."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("lists",)

    result: ScreeningResult
    lists: Annotated[tuple[Label, ...], Field(max_length=50)] = ()
    """The lists screened against (e.g. a national sanctions list, UN, OFAC)."""
    screening_ref: Identifier | None = None


class ClientBeneficialOwnerRecorded(EventPayload):
    """client.beneficial_owner_recorded (D-03): a beneficial owner of a corporate (or
    institutional) client. ``owner_ref`` is the institution's reference of the owner;
    the owner's own personal values (``owner_fields``) are sealed like every personal value."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("owner_fields",)

    owner_ref: Identifier
    share_percent: Annotated[Decimal, Field(gt=0, le=100, max_digits=7, decimal_places=4)]
    owner_fields: Annotated[dict[PersonalField, PersonalValue], Field(min_length=1)] | None = None


class ClientLateEntryApproved(EventPayload):
    """client.late_entry_approved (D-05b): a supervisor approves the late entry (补录) of a
    sale, recommendation or contract, named by the ``event_id`` it will be recorded under."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    event_id: uuid.UUID
    reason: Label


class ClientAccountClosed(EventPayload):
    """client.account_closed (D-09, D-11): the relationship ends; the client's lifecycle moves
    to churned and the retention clock of the client's records starts at this event's
    ``occurred_at``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    reason: AccountClosureReason
    note: Note | None = None


class ClientAccountReopened(EventPayload):
    """client.account_reopened (D-09, D-11): a closed relationship starts again; the retention
    clock stops until the next closure."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    reason: AccountReopeningReason
    note: Note | None = None
